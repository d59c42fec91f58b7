#!/usr/bin/env bash
# Debian packages the offline voices and audio decoding use (espeak-ng, flite, festival, ffmpeg, sox).
# Installed when missing and we may (root with apt-get); otherwise a warning: the toolkit then reports a
# clear error naming the missing engine when a voice needs it.
set -u
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
command -v flite >/dev/null || need+=(flite)
command -v festival >/dev/null || need+=(festival festvox-kallpc16k festvox-us-slt-hts)
command -v text2wave >/dev/null || need+=(festival)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
command -v sox >/dev/null || need+=(sox)
# headless browser for the HTML report test
command -v chromium >/dev/null || need+=(chromium)
[ -e /usr/lib/x86_64-linux-gnu/libsndfile.so.1 ] || [ -e /usr/lib/aarch64-linux-gnu/libsndfile.so.1 ] || need+=(libsndfile1)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  echo "installing system packages: ${need[*]}"
  apt-get update -qq >/dev/null 2>&1 || true
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
    || echo "warning: could not install ${need[*]}; voices that need them will report a clear error"
else
  echo "warning: missing system packages: ${need[*]} (apt-get install them for every offline voice)"
fi
exit 0
