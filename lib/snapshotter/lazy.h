/* SPDX-License-Identifier: Apache-2.0 */
/* Remote snapshots of anole lazy images (docs/DESIGN-snapshotter.md,
 * "Lazy images: remote snapshots"): what a Prepare's labels say, and the
 * lazy mounts the anole daemon makes and removes for the snapshotter. */
#ifndef ANOLE_SNAPSHOTTER_LAZY_H
#define ANOLE_SNAPSHOTTER_LAZY_H

#include <jansson.h>
#include <stddef.h>

#include "anole/anole.h"

#define LABEL_REF "containerd.io/snapshot.ref"
#define LABEL_CRI "containerd.io/snapshot/cri."
#define LABEL_IMAGE_REF LABEL_CRI "image-ref"
#define LABEL_LAYER_DIGEST LABEL_CRI "layer-digest"
#define LABEL_MANIFEST_DIGEST LABEL_CRI "manifest-digest"

enum lazy_kind {
	LAZY_NONE,  /* an ordinary snapshot */
	LAZY_BASE,  /* maybe an anole lazy image's metadata layer: ask its registry */
	LAZY_UPPER, /* a layer above a lazy image's metadata layer: empty */
};

/* The image @labels name as a reference the daemon mounts:
 * "docker://NAME@DIGEST" when the manifest digest is given (what
 * containerd resolved, so a tag moved since cannot change the tree),
 * else "docker://NAME[:TAG]". -ENOENT without cri.image-ref, -EINVAL
 * for a value that is no reference, -ENAMETOOLONG. */
int lazy_ref_of(json_t *labels, char *buf, size_t len);

/* What a Prepare with @labels over a parent whose record's "lazy" object
 * is @parent_lazy (NULL: no parent, or an ordinary one; @has_parent says
 * which) makes: an unpacker's Prepare (containerd.io/snapshot.ref set)
 * of a first layer with the cri.* labels may be a lazy image's base; one
 * over a lazy snapshot of the same image is one of its upper layers. */
enum lazy_kind lazy_classify(json_t *labels, int has_parent, json_t *parent_lazy);

/* The daemon, when it must be started, runs as `anole daemon` from the
 * anole executable beside this program (the build tree, or the
 * installed pair), as `anole snapshotter` finds this one. */
void lazy_init(void);

/* Ask the anole daemon (found at the runtime directory's control
 * socket, started when absent, as `anole mount` does) for a lazy mount
 * of @ref at @mountpoint; its one line in @err when it fails. */
int lazy_mount(const char *ref, const char *mountpoint, struct anole_error *err);
/* The daemon unmounts @mountpoint; a mount it does not know is none of
 * its own (already gone): 0. */
int lazy_umount(const char *mountpoint, struct anole_error *err);

#endif
