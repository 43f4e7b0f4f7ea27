// An edgerelay policy plugin in AssemblyScript, without a JSON library.
//
// Rule: suppress an account_shared event whose data "owner" equals the
// plugin config's "internal_owner" (reason "internal_owner"); allow
// everything else unchanged. Manifest config:  config { internal_owner = "bot@corp.example" }
//
// It implements ABI v1 (docs/plugins.md): exports memory, relay_abi_version,
// relay_alloc and relay_evaluate; built with
//   npx asc assembly/index.ts -O3 --runtime incremental --use abort= -o as_example.wasm
// so the module has no imports at all.
//
// It scans the input for `"key":` patterns instead of parsing it. That is
// sound for the host's JSON: a quote inside a string value is always
// escaped (\"), so `"type":` can only match a key; the event's "type" comes
// before its "data", and config comes last. Values are compared as raw JSON
// (escapes included), which is exact for one encoder's output.

let inBuf = new ArrayBuffer(0);

const ALLOW = String.UTF8.encode('{"verdict":"allow"}');
const SUPPRESS = String.UTF8.encode('{"verdict":"suppress","reason":"internal_owner"}');
const KEY_TYPE = String.UTF8.encode('"type":');
const KEY_OWNER = String.UTF8.encode('"owner":');
const KEY_CONFIG_OWNER = String.UTF8.encode('"internal_owner":');
const ACCOUNT_SHARED = String.UTF8.encode('account_shared');

export function relay_abi_version(): i32 {
  return 1;
}

export function relay_alloc(size: i32): usize {
  if (size < 0 || size > (16 << 20)) return 0;
  if (size > inBuf.byteLength) inBuf = new ArrayBuffer(size);
  return changetype<usize>(inBuf);
}

export function relay_evaluate(ptr: usize, len: i32): u64 {
  const out = decide(ptr, ptr + <usize>len) ? SUPPRESS : ALLOW;
  return (<u64>changetype<usize>(out) << 32) | <u64>out.byteLength;
}

function decide(ptr: usize, end: usize): bool {
  const typ = stringAfter(ptr, end, KEY_TYPE);
  if (typ == 0 || !equalsBuf(typ, ACCOUNT_SHARED)) return false;
  const want = stringAfter(ptr, end, KEY_CONFIG_OWNER);
  const owner = stringAfter(ptr, end, KEY_OWNER);
  if (want == 0 || owner == 0) return false;
  return equalsRaw(owner, want);
}

// A JSON string value found in the input: [start, end) of its raw bytes,
// packed as (start << 32) | end; 0 when absent.
function stringAfter(ptr: usize, end: usize, key: ArrayBuffer): u64 {
  let at = find(ptr, end, key);
  if (at == 0) return 0;
  at += <usize>key.byteLength;
  if (at >= end || load<u8>(at) != 0x22) return 0; // not a string value
  const start = at + 1;
  let i = start;
  while (i < end) {
    const c = load<u8>(i);
    if (c == 0x5c) { i += 2; continue; } // backslash escape
    if (c == 0x22) return (<u64>start << 32) | <u64>i;
    i++;
  }
  return 0;
}

function find(ptr: usize, end: usize, pat: ArrayBuffer): usize {
  const n = <usize>pat.byteLength;
  const p = changetype<usize>(pat);
  if (n == 0 || end - ptr < n) return 0;
  const first = load<u8>(p);
  for (let i = ptr; i + n <= end; i++) {
    if (load<u8>(i) != first) continue;
    if (memory.compare(i, p, n) == 0) return i;
  }
  return 0;
}

function equalsRaw(a: u64, b: u64): bool {
  const as = <usize>(a >> 32), ae = <usize>(a & 0xffffffff);
  const bs = <usize>(b >> 32), be = <usize>(b & 0xffffffff);
  return ae - as == be - bs && memory.compare(as, bs, ae - as) == 0;
}

function equalsBuf(a: u64, buf: ArrayBuffer): bool {
  const as = <usize>(a >> 32), ae = <usize>(a & 0xffffffff);
  const n = <usize>buf.byteLength;
  return ae - as == n && memory.compare(as, changetype<usize>(buf), n) == 0;
}
