/* SPDX-License-Identifier: Apache-2.0 */
/*
 * The mount table on disk, for a worker started after this one dies:
 * RUNTIME/mounts.json (the mounts, no secrets) and credentials.json
 * (0600: each mount's registry credentials). Rendered under wk->lock
 * when the table changes (save_mounts), written after it is let go
 * (mounts_flush), so no file is written while readers wait on the lock.
 */
#include <jansson.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "lazy/lazy.h"
#include "registry/registry.h"
#include "serve/worker.h"

static json_t *mount_json(const struct lmount *m)
{
	json_t *blobs = json_array();
	for (size_t i = 0; i < m->nblobs; i++) {
		const struct anole_lazy_blob *b = &m->lblobs[i];
		/* chunks: a restored v1 blob finds its extents again */
		json_array_append_new(blobs, json_pack("{s:s, s:I, s:s, s:I, s:s, s:b}", "digest",
						       b->digest, "size", (json_int_t)b->size,
						       "digests", b->digests, "digests_size",
						       (json_int_t)b->digests_size, "chunks", b->chunks,
						       "cut_at_extents", b->cut_at_extents));
	}
	return json_pack("{s:s, s:s, s:i, s:s, s:s, s:b, s:o}", "mountpoint", m->mountpoint, "ref",
			 m->ref, "tls_verify", m->tls_verify, "manifest", m->manifest, "meta",
			 m->meta_path, "fuse", m->fuse, "blobs", blobs);
}

/* The mounts' credentials, for a worker started after this one dies:
 * root's alone (0600), apart from mounts.json, which holds none. NULL
 * when no mount has any (or out of memory): the file goes. */
static char *credentials_text(struct worker *wk)
{
	json_t *o = json_object();
	for (size_t i = 0; o && i < wk->mtab.nmounts; i++) {
		const struct registry_creds *c = &wk->mtab.mounts[i]->creds;
		if (c->basic || c->identity_token)
			json_object_set_new(o, wk->mtab.mounts[i]->mountpoint,
					    json_pack("{s:s*, s:s*}", "basic", c->basic,
						      "identity_token", c->identity_token));
	}
	char *text = json_object_size(o) ? json_dumps(o, JSON_COMPACT) : NULL;
	json_decref(o);
	return text;
}

static void free_wiped(char *text)
{
	if (text)
		explicit_bzero(text, strlen(text));
	free(text);
}

/* The mounts, for a worker started after this one dies: the table as it
 * is now (wk->lock held), written by mounts_flush once the lock is let
 * go. Whoever flushes writes the newest table, one writer at a time, so
 * an older table never lands over a newer one. */
void save_mounts(struct worker *wk)
{
	json_t *a = json_array();
	for (size_t i = 0; i < wk->mtab.nmounts; i++)
		json_array_append_new(a, mount_json(wk->mtab.mounts[i]));
	free(wk->saved.mounts);
	free_wiped(wk->saved.creds);
	wk->saved.mounts = json_dumps(a, JSON_INDENT(1));
	wk->saved.creds = credentials_text(wk);
	wk->saved.dirty = true;
	wk->saved.seq++;
	json_decref(a);
}

/* Write one taken table (files_lock orders the writers; a table older
 * than one written already is dropped). Frees the texts. */
static void saved_write(struct worker *wk, char *mounts, char *creds, uint64_t seq)
{
	const struct serve_files *f = &wk->files;
	pthread_mutex_lock(&wk->files_lock);
	if (seq > wk->saved.written) {
		wk->saved.written = seq;
		if (!mounts || outfile_write(f->mounts, mounts, strlen(mounts)) < 0)
			wlog("%s: cannot write", f->mounts);
		if (!creds)
			unlink(f->creds); /* no mount has any */
		else if (outfile_write_private(f->creds, creds, strlen(creds)) < 0)
			wlog("%s: cannot write", f->creds);
	}
	pthread_mutex_unlock(&wk->files_lock);
	free(mounts);
	free_wiped(creds);
}

/* What save_mounts left (wk->lock held): its number, 0 when nothing. */
static uint64_t saved_take(struct worker *wk, char **mounts, char **creds)
{
	uint64_t seq = wk->saved.dirty ? wk->saved.seq : 0;
	*mounts = wk->saved.mounts;
	*creds = wk->saved.creds;
	wk->saved.mounts = wk->saved.creds = NULL;
	wk->saved.dirty = false;
	return seq;
}

void mounts_flush_locked(struct worker *wk)
{
	char *mounts, *creds;
	uint64_t seq = saved_take(wk, &mounts, &creds);
	if (seq)
		saved_write(wk, mounts, creds, seq);
}

void mounts_flush(struct worker *wk)
{
	char *mounts, *creds;
	pthread_mutex_lock(&wk->lock);
	uint64_t seq = saved_take(wk, &mounts, &creds);
	pthread_mutex_unlock(&wk->lock);
	if (seq)
		saved_write(wk, mounts, creds, seq);
}
