/* SPDX-License-Identifier: Apache-2.0 */
/* The value of ANOLE_SMC_EXEC (execenv.h):
 *
 *   1;S,FLAGS,MEMFD,CTL,RXD,RXS,TXD,TXS,RING,TXB,RXB,PORT,N[.N...];...
 *
 * S is "s" (server) or "c"; every other field is a decimal number
 * without sign or leading zeros; N are the program's numbers. */
#include "smc/execenv.h"

#include <errno.h>
#include <string.h>

/* @v in decimal at *@off; false if it does not fit. */
static bool put_u64(char *buf, size_t len, size_t *off, uint64_t v)
{
	char tmp[24];
	int n = 0;

	do
		tmp[n++] = (char)('0' + v % 10);
	while ((v /= 10));
	if (*off + (size_t)n >= len)
		return false;
	while (n)
		buf[(*off)++] = tmp[--n];
	return true;
}

static bool put_ch(char *buf, size_t len, size_t *off, char ch)
{
	if (*off + 1 >= len)
		return false;
	buf[(*off)++] = ch;
	return true;
}

int smc_exec_format(char *buf, size_t len, size_t *off, const struct smc_exec_ent *e)
{
	const uint64_t f[] = {e->flags, (uint64_t)e->memfd, (uint64_t)e->ctl, (uint64_t)e->efd[0],
			      (uint64_t)e->efd[1], (uint64_t)e->efd[2], (uint64_t)e->efd[3], e->ring,
			      e->tx_bytes, e->rx_bytes, e->dport};
	size_t o = *off;
	bool ok = put_ch(buf, len, &o, ';') && put_ch(buf, len, &o, e->server ? 's' : 'c');

	for (size_t i = 0; ok && i < sizeof(f) / sizeof(f[0]); i++)
		ok = put_ch(buf, len, &o, ',') && put_u64(buf, len, &o, f[i]);
	for (int i = 0; ok && i < e->nnum; i++)
		ok = put_ch(buf, len, &o, i ? '.' : ',') && put_u64(buf, len, &o, (uint64_t)e->num[i]);
	if (!ok || e->nnum < 1 || e->nnum > SMC_EXEC_MAXNUM) {
		if (*off < len)
			buf[*off] = 0;
		return -E2BIG;
	}
	buf[o] = 0;
	*off = o;
	return 0;
}

/* A decimal number at *@p, at most @max, no sign or leading zero. */
static bool get_num(const char **p, uint64_t max, uint64_t *v)
{
	const char *s = *p;
	uint64_t n = 0;

	if (*s < '0' || *s > '9' || (*s == '0' && s[1] >= '0' && s[1] <= '9'))
		return false;
	for (; *s >= '0' && *s <= '9'; s++) {
		unsigned d = (unsigned)(*s - '0');

		if (d > max || n > (max - d) / 10)
			return false;
		n = n * 10 + d;
	}
	*p = s;
	*v = n;
	return true;
}

static bool get_fd(const char **p, uint64_t limit, int *fd)
{
	uint64_t v;

	if (!get_num(p, limit - 1, &v))
		return false;
	*fd = (int)v;
	return true;
}

static bool expect(const char **p, char ch)
{
	if (**p != ch)
		return false;
	(*p)++;
	return true;
}

/* One entry at @s; true if all of it parsed up to ';' or the end. */
static bool parse_ent(const char *s, struct smc_exec_ent *e)
{
	int *fds[6] = {&e->memfd, &e->ctl, &e->efd[0], &e->efd[1], &e->efd[2], &e->efd[3]};
	uint64_t v;

	memset(e, 0, sizeof(*e));
	if (*s != 's' && *s != 'c')
		return false;
	e->server = *s++ == 's';
	if (!expect(&s, ',') || !get_num(&s, SMC_EXEC_FLAGS, &v))
		return false;
	e->flags = (unsigned)v;
	for (int i = 0; i < 6; i++)
		if (!expect(&s, ',') || !get_fd(&s, (uint64_t)INT32_MAX + 1, fds[i]))
			return false;
	if (!expect(&s, ',') || !get_num(&s, UINT32_MAX, &v))
		return false;
	e->ring = (uint32_t)v;
	if (!expect(&s, ',') || !get_num(&s, UINT64_MAX, &e->tx_bytes) || !expect(&s, ',') ||
	    !get_num(&s, UINT64_MAX, &e->rx_bytes) || !expect(&s, ',') || !get_num(&s, UINT16_MAX, &v))
		return false;
	e->dport = (uint16_t)v;
	do {
		if (e->nnum == SMC_EXEC_MAXNUM || !expect(&s, e->nnum ? '.' : ',') ||
		    !get_fd(&s, SMC_EXEC_FD_LIMIT, &e->num[e->nnum]))
			return false;
		e->nnum++;
	} while (*s == '.');
	return *s == ';' || *s == 0;
}

int smc_exec_parse(const char *s, size_t *pos, struct smc_exec_ent *e)
{
	size_t vl = strlen(SMC_EXEC_VERSION), end;

	if (*pos == 0) {
		/* another version's value: nothing in it can be read */
		if (strncmp(s, SMC_EXEC_VERSION, vl) || (s[vl] != ';' && s[vl] != 0))
			return 0;
		*pos = vl;
	}
	if (s[*pos] == 0)
		return 0;
	/* at ';' here: past the version or the previous entry */
	(*pos)++;
	end = *pos + strcspn(s + *pos, ";");
	if (!parse_ent(s + *pos, e)) {
		*pos = end;
		return -EINVAL;
	}
	*pos = end;
	return 1;
}
