#!/bin/sh
# man.sh PROGRAM SECTION DESCRIPTION OUT - writes PROGRAM's man page with
# help2man from its own --help and --version, so the page cannot drift from
# the program. For the ca-cas tool, each command's --help becomes a
# subsection of COMMANDS.
set -eu
prog=$1 section=$2 desc=$3 out=$4
inc=$(mktemp)
trap 'rm -f "$inc"' EXIT
name=$(basename "$prog")
if [ "$name" = ca-cas ]; then
  printf '[COMMANDS]\n' >"$inc"
  "$prog" --help | sed -n '/^commands:/,/^$/p' | awk 'NR > 1 && NF { print $1 }' |
    while read -r cmd; do
      printf '.SS "%s"\n.nf\n' "$cmd" >>"$inc"
      "$prog" "$cmd" --help | sed 's/\\/\\\\/g; s/^\./\\\&./' >>"$inc"
      printf '.fi\n' >>"$inc"
    done
fi
cat >>"$inc" <<'SEE'
[SEE ALSO]
.BR ca-cas (1),
.BR ca-cas-storaged (8),
.BR ca-cas-balancerd (8).
The HTTP API, on-disk format and operations guide are in
/usr/share/doc/ca-cas (API.md, FORMAT.md, OPERATIONS.md, CLI.md).
SEE
help2man --no-info --no-discard-stderr --section="$section" --name="$desc" \
  --include="$inc" --output="$out" "$prog"
