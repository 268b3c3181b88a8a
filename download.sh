#!/usr/bin/env bash
# Downloads the data sets into data/. Resumable and idempotent: run it again after a cut.
#   ./download.sh                 IMDB-WIKI face crops (imdb_crop + wiki_crop, about 8 GB)
#   ./download.sh --appa          APPA-REAL (about 0.5 GB)
#   ./download.sh --imdb-clean    the IMDB-Clean label CSVs (the images are the full IMDB set)
# Flags combine; --imdb and --wiki pick one half of IMDB-WIKI. DATA_DIR overrides data/, and
# IMDB_WIKI_URL, APPA_URL, IMDB_CLEAN_URL override where each comes from (mirrors, tests).
set -euo pipefail

DATA_DIR=${DATA_DIR:-data}
IMDB_WIKI_URL=${IMDB_WIKI_URL:-https://data.vision.ee.ethz.ch/cvl/rrothe/imdb-wiki/static}
APPA_URL=${APPA_URL:-http://158.109.8.102/AppaRealAge}
IMDB_CLEAN_URL=${IMDB_CLEAN_URL:-https://raw.githubusercontent.com/yiminglin-ai/imdb-clean/master/csvs}
IMDB_CLEAN_FILES="imdb_train_new.csv imdb_valid_new.csv imdb_test_new.csv
imdb_train_new_1024.csv imdb_valid_new_1024.csv imdb_test_new_1024.csv"

fail() { echo "error: $*" >&2; exit 1; }

usage() { sed -n '2,7s/^# \{0,1\}//p' "$0"; }

want_imdb=0 want_wiki=0 want_appa=0 want_clean=0
for arg in "$@"; do
  case "$arg" in
    --imdb) want_imdb=1 ;;
    --wiki) want_wiki=1 ;;
    --appa) want_appa=1 ;;
    --imdb-clean) want_clean=1 ;;
    -h|--help) usage; exit 0 ;;
    *) usage >&2; fail "unknown option $arg" ;;
  esac
done
if [ $((want_imdb + want_wiki + want_appa + want_clean)) -eq 0 ]; then
  want_imdb=1 want_wiki=1
fi
command -v curl >/dev/null || fail "curl is needed; install it (apt-get install curl)"
mkdir -p "$DATA_DIR"

# Size in bytes the server announces for a URL, or nothing when it does not say.
remote_size() {
  curl -sfIL "$1" | tr -d '\r' | awk 'tolower($1) == "content-length:" { size = $2 } END { print size }'
}

# Downloads URL to FILE through FILE.part, resuming a cut download, and checks the size.
fetch() {
  local url=$1 file=$2 expected have
  [ -f "$file" ] && { echo "have $file"; return; }
  curl -sfIL -o /dev/null "$url" || fail "cannot reach $url (missing or server down); check the address or try later"
  expected=$(remote_size "$url")
  have=$( [ -f "$file.part" ] && stat -c %s "$file.part" || echo 0)
  if [ -z "$expected" ] || [ "$have" != "$expected" ]; then
    echo "downloading $url -> $file${expected:+ ($((expected / 1048576)) MiB)}"
    curl -fL --retry 3 -C - -o "$file.part" "$url" \
      || fail "download of $url was cut; run $0 again to resume"
  fi
  have=$(stat -c %s "$file.part")
  [ -z "$expected" ] || [ "$have" = "$expected" ] \
    || fail "$file.part has $have bytes, the server announced $expected; delete it and run again"
  mv "$file.part" "$file"
}

# Extracts ARCHIVE holding the folder NAME into DATA_DIR/NAME through a temporary folder, so an
# interrupted extraction never leaves a folder that looks finished; then removes the archive.
extract() {
  local archive=$1 name=$2 staging="$DATA_DIR/.extracting-$2"
  rm -rf "$staging" && mkdir -p "$staging"
  echo "extracting $archive"
  case "$archive" in
    *.zip) python3 -m zipfile -e "$archive" "$staging" ;;
    *) tar -xf "$archive" -C "$staging" ;;
  esac || fail "$archive is damaged; delete it and run again"
  [ -d "$staging/$name" ] || fail "$archive does not hold the folder $name"
  mv "$staging/$name" "$DATA_DIR/$name"
  rm -rf "$staging" "$archive"
  echo "ready: $DATA_DIR/$name"
}

# One data set packed as an archive: skipped when its folder is there.
get_archive() {
  local url=$1 name=$2 archive="$DATA_DIR/${1##*/}"
  if [ -d "$DATA_DIR/$name" ]; then echo "have $DATA_DIR/$name"; return; fi
  fetch "$url" "$archive"
  extract "$archive" "$name"
}

# The archives wanted and not yet extracted, as "URL NAME" lines.
archives() {
  [ $want_imdb = 1 ] && echo "$IMDB_WIKI_URL/imdb_crop.tar imdb_crop"
  [ $want_wiki = 1 ] && echo "$IMDB_WIKI_URL/wiki_crop.tar wiki_crop"
  [ $want_appa = 1 ] && echo "$APPA_URL/appa-real-release.zip appa-real-release"
  true
}

# Disk space needed: each archive twice (the archive and what it extracts to), less what a cut
# download already holds; a server that announces no size counts as nothing.
need=0
while read -r url name; do
  [ -n "$url" ] && [ ! -d "$DATA_DIR/$name" ] || continue
  [ -f "$DATA_DIR/${url##*/}" ] && continue
  curl -sfIL -o /dev/null "$url" || fail "cannot reach $url (missing or server down); check the address or try later"
  size=$(remote_size "$url")
  part="$DATA_DIR/${url##*/}.part"
  have=$( [ -f "$part" ] && stat -c %s "$part" || echo 0)
  need=$((need + 2 * ${size:-0} - have))
done <<< "$(archives)"
free=$(( $(df -Pk "$DATA_DIR" | awk 'NR == 2 { print $4 }') * 1024 ))
echo "needs up to $(numfmt --to=iec "$need") in $DATA_DIR while extracting; $(numfmt --to=iec "$free") free"
[ "$free" -ge "$need" ] || fail "not enough disk space in $DATA_DIR; free some or set DATA_DIR"

while read -r url name; do
  [ -z "$url" ] || get_archive "$url" "$name"
done <<< "$(archives)"
if [ $want_clean = 1 ]; then
  mkdir -p "$DATA_DIR/imdb-clean/csvs"
  for file in $IMDB_CLEAN_FILES; do
    fetch "$IMDB_CLEAN_URL/$file" "$DATA_DIR/imdb-clean/csvs/$file"
  done
fi
echo "done"
