#!/bin/sh
# mk/dist.sh — release archives, called by `make dist`.
#
#   VERSION=v1.2.3 PLATFORMS="linux/amd64 linux/arm64" OUT=build/dist sh mk/dist.sh
#
# For each GOOS/GOARCH in PLATFORMS it builds static binaries stamped with
# VERSION and packs edgerelay-VERSION-GOOS-GOARCH.tar.gz in OUT with:
#   bin/relayd bin/relayctl          the binaries
#   relayd.hcl                       production sample config
#   relayd.service relayd.sysusers   systemd unit and its user
#   policies/                        the shipped policy plugins (build/policies)
#   deploy/                          Grafana dashboard, Prometheus alert rules
#   docs/ README.md RATIONALE.md LICENSE (when present)
# and OUT/SHA256SUMS. The policies must be built first (make policies).
set -eu

: "${VERSION:?set VERSION}"
: "${PLATFORMS:=linux/amd64 linux/arm64}"
: "${OUT:=build/dist}"
: "${GO:=go}"

if ! ls build/policies/*.wasm >/dev/null 2>&1; then
	echo "mk/dist.sh: no build/policies/*.wasm (run make policies)" >&2
	exit 1
fi

rm -rf "$OUT"
mkdir -p "$OUT"
ldflags="-s -w -X main.version=$VERSION"
for p in $PLATFORMS; do
	goos=${p%/*}
	goarch=${p#*/}
	name="edgerelay-$VERSION-$goos-$goarch"
	stage="$OUT/$name"
	mkdir -p "$stage/bin" "$stage/docs" "$stage/policies"
	for cmd in relayd relayctl; do
		CGO_ENABLED=0 GOOS=$goos GOARCH=$goarch $GO build -trimpath -ldflags "$ldflags" -o "$stage/bin/$cmd" "./cmd/$cmd"
	done
	cp dist/relayd.hcl dist/relayd.service dist/relayd.sysusers "$stage/"
	cp build/policies/*.wasm build/policies/*.hcl "$stage/policies/"
	cp docs/*.md "$stage/docs/"
	cp -R deploy "$stage/"
	cp README.md RATIONALE.md "$stage/"
	if [ -f LICENSE ]; then cp LICENSE "$stage/"; fi
	tar -C "$OUT" --owner=0 --group=0 --numeric-owner -czf "$OUT/$name.tar.gz" "$name"
	rm -rf "$stage"
	echo "$OUT/$name.tar.gz"
done
(cd "$OUT" && sha256sum -- *.tar.gz > SHA256SUMS)
