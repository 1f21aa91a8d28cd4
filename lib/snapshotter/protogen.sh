#!/bin/sh
# protogen.sh PROTOC_C THIRD_PARTY OUTDIR: generate the protobuf-c code
# of containerd's snapshots, images, content and leases services (third_party/, copied unchanged from
# Debian's golang-github-containerd-containerd-dev 1.6.20 and
# libprotobuf-dev 3.21.12) as flat files in OUTDIR. The staged copies
# lose only what protoc-c cannot use: gogoproto's Go-only options (a
# weak import whose file Debian ships elsewhere) and the directories in
# import paths, so that every output has a plain name for Meson.
set -eu
protoc_c=$1 tp=$2
mkdir -p "$3"
out=$(cd "$3" && pwd)
stage=$out/protostage
rm -rf "$stage"
mkdir -p "$stage"
flat() {
	sed -e '/^import weak "gogoproto\/gogo.proto";/d' \
	    -e '/^[[:space:]]*option (gogoproto\./d' \
	    -e 's/ *\[(gogoproto\.[^]]*\]//' \
	    -e 's#^import "google/protobuf/\([a-z_]*\.proto\)";#import "\1";#' \
	    -e 's#^import "github.com/containerd/containerd/api/types/\([a-z_]*\.proto\)";#import "\1";#' \
	    "$1" >"$stage/$(basename "$1")"
}
for s in snapshots images content leases; do
	flat "$tp/containerd/api/services/$s/v1/$s.proto"
done
flat "$tp/containerd/api/types/mount.proto"
flat "$tp/containerd/api/types/descriptor.proto"
for f in empty field_mask timestamp; do
	flat "$tp/protobuf/google/protobuf/$f.proto"
done
cd "$stage"
"$protoc_c" -I. --c_out="$out" snapshots.proto images.proto content.proto leases.proto \
	mount.proto descriptor.proto empty.proto field_mask.proto timestamp.proto
rm -rf "$stage"
