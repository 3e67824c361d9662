#!/bin/sh
# Installs what dax-harness needs on a Debian bookworm host, as root.
# The only change to the host's apt setup: a bookworm-backports entry, because bookworm's own
# QEMU (7.2) is too old for CXL volatile memory. Kernels and guest packages are fetched later
# by the harness under its own apt configuration.
set -eu
if ! grep -rqs 'bookworm-backports' /etc/apt/sources.list /etc/apt/sources.list.d/; then
  cat > /etc/apt/sources.list.d/bookworm-backports.sources <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  busybox-static cpio kmod xz-utils zstd binutils gzip ca-certificates git apt-utils \
  mmdebstrap rsync ccache make gcc bc flex bison libelf-dev libssl-dev bubblewrap >/dev/null
# The tests read junit.xml with a real JUnit consumer (test/consumers/junit_check.py).
apt-get install -y -qq --no-install-recommends python3 python3-junitparser >/dev/null
apt-get install -y -qq --no-install-recommends -t bookworm-backports qemu-system-x86 qemu-utils >/dev/null
qemu-system-x86_64 --version | head -1
