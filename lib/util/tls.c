/* SPDX-License-Identifier: Apache-2.0 */
/* Per-thread objects (util/tls.h). */
#include "util/tls.h"

void *tls_get(struct tls_slot *s)
{
	if (!__atomic_load_n(&s->made, __ATOMIC_ACQUIRE)) {
		pthread_mutex_lock(&s->lock);
		if (!s->made) {
			s->ok = pthread_key_create(&s->key, s->dtor) == 0;
			__atomic_store_n(&s->made, true, __ATOMIC_RELEASE);
		}
		pthread_mutex_unlock(&s->lock);
	}
	return s->ok ? pthread_getspecific(s->key) : NULL;
}

bool tls_set(struct tls_slot *s, void *p)
{
	return s->ok && pthread_setspecific(s->key, p) == 0;
}
