# Unpack on the lent machine, once per machine: the carried TensorFlow 2.21 pieces
# (/root/parts/part.*, built by make_bundle.sh) into /tmp/site312, and the built-in
# BBC corpus package beside it. Sourced by the gpu_run.sh scripts; needs T0.
if [ ! -d /tmp/site312/tensorflow ]; then
  (cd /root/parts && sha256sum -c SHA256SUMS --quiet) || { echo "SETUP: pieces missing or damaged"; ls -l /root/parts; exit 3; }
  cat $(ls /root/parts/part.* | sort) | xz -d -T16 | tar xf - -C /tmp || exit 1
  xz -d < /root/parts/c4c.tar.xz | tar xf - -C /tmp/site312 || exit 1
fi
echo "SETUP: unpacked in $(( $(date +%s) - T0 )) s"
