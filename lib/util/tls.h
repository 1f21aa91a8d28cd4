/* SPDX-License-Identifier: Apache-2.0 */
/*
 * A per-thread object, made on a thread's first use and freed when the
 * thread exits: decoders kept from call to call on whatever threads call
 * them (extract's pool, FUSE's, the daemon's).
 */
#ifndef ANOLE_UTIL_TLS_H
#define ANOLE_UTIL_TLS_H

#include <pthread.h>
#include <stdbool.h>

struct tls_slot {
	pthread_mutex_t lock;
	bool made, ok; /* the key: tried; there */
	pthread_key_t key;
	void (*dtor)(void *);
};
#define TLS_SLOT(dtor) {PTHREAD_MUTEX_INITIALIZER, false, false, 0, (dtor)}

/* This thread's object; NULL if it has none yet (or no key could be
 * made: then the caller makes one for the call). */
void *tls_get(struct tls_slot *s);
/* Keep @p as this thread's object; false if it cannot be kept. */
bool tls_set(struct tls_slot *s, void *p);

#endif
