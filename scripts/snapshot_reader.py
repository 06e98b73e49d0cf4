#!/usr/bin/env python3
"""A second, independent snapshot/delta reader written from docs/FORMAT.md alone.

It exists to prove the spec is enough: run it on the golden fixtures and it must give the
verdicts the Rust reader gives. Needs Python 3 and the xxHash C library (Debian: libxxhash0).

    python3 scripts/snapshot_reader.py tests/data/v1-small-unsigned.snap jti-alpha 1767226200
    python3 scripts/snapshot_reader.py --selftest
"""
import ctypes
import struct
import sys

_lib = ctypes.CDLL("libxxhash.so.0")
_xxh3 = _lib.XXH3_64bits_withSeed
_xxh3.restype = ctypes.c_uint64
_xxh3.argtypes = [ctypes.c_char_p, ctypes.c_size_t, ctypes.c_uint64]

M64 = (1 << 64) - 1
SALT = [0x47B6137B, 0x44974D91, 0x8824AD5B, 0xA2B7289D, 0x705495C7, 0x2DF1424B, 0x9EFC4947, 0x5C6BFB31]
GOLDEN = 0x9E3779B97F4A7C15


def xxh3(data: bytes, seed: int = 0) -> int:
    return _xxh3(data, len(data), seed)


class Invalid(Exception):
    pass


def key_hash(seed, jti: bytes, iss: bytes = None) -> int:
    if iss is not None:
        seed = xxh3(iss, seed) ^ GOLDEN
    return xxh3(jti, seed)


class Snapshot:
    def __init__(self, b: bytes):
        if len(b) < 160:
            raise Invalid("truncated header")
        (magic, version, flags, alg) = struct.unpack_from("<8sHHB", b, 0)
        if magic != b"RVBLSNAP" or version != 1 or flags & ~3 or alg != 1:
            raise Invalid("magic/version/flags/algorithm")
        if any(b[13:16]) or any(b[144:160]):
            raise Invalid("reserved header bytes")
        (self.seed, self.width, self.horizon, self.leeway) = struct.unpack_from("<4Q", b, 16)
        (fp, load) = struct.unpack_from("<2d", b, 48)
        (self.generation, self.parent, self.layout_id, _epoch, self.created_at, self.coverage,
         self.oldest) = struct.unpack_from("<7Q", b, 64)
        (count, ncut, cut_off, trailer) = struct.unpack_from("<IIQQ", b, 120)
        if self.width == 0 or self.horizon == 0 or self.horizon % self.width or self.leeway > self.horizon:
            raise Invalid("window parameters")
        if not (1e-6 <= fp < 1) or not (0 < load <= 512):
            raise Invalid("fp rate / load target")
        if self.generation == 0 or self.parent >= self.generation:
            raise Invalid("generation")
        span = self.horizon + 2 * self.leeway
        self.ring_len = -(-span // self.width) + 1
        if self.ring_len > 65536 or count != self.ring_len + 1 or self.oldest + self.ring_len >= M64:
            raise Invalid("bucket count / oldest")
        dir_end = 160 + 32 * count
        if dir_end > len(b):
            raise Invalid("directory truncated")
        nxt = (dir_end + 63) & ~63
        if any(b[dir_end:nxt]):
            raise Invalid("padding")
        layout = bytearray(b"revbloom.layout.1") + b[16:64] + struct.pack("<Q", self.oldest)
        self.dir = []
        for i in range(count):
            (number, entries, blocks, reserved, offset) = struct.unpack_from("<QQIIQ", b, 160 + 32 * i)
            want = M64 if i == 0 else self.oldest + i - 1
            if number != want or reserved or offset != nxt or nxt + 64 * blocks > len(b):
                raise Invalid(f"directory entry {i}")
            layout += struct.pack("<QI", number, blocks)
            self.dir.append((entries, blocks, offset))
            nxt += 64 * blocks
        if cut_off != nxt or (ncut > 0) != bool(flags & 2) or trailer != nxt + 16 * ncut:
            raise Invalid("cutoff table / trailer offsets")
        signed = bool(flags & 1)
        if len(b) != trailer + 8 + (64 if signed else 0):
            raise Invalid("length")
        self.cutoffs = [struct.unpack_from("<QQ", b, cut_off + 16 * i) for i in range(ncut)]
        if any(self.cutoffs[i][0] >= self.cutoffs[i + 1][0] for i in range(ncut - 1)):
            raise Invalid("cutoffs not strictly sorted")
        if xxh3(bytes(layout)) != self.layout_id:
            raise Invalid("layout id")
        if struct.unpack_from("<Q", b, trailer)[0] != xxh3(b[:trailer]):
            raise Invalid("checksum")
        self.signed = signed  # Ed25519 verification left to a crypto library (FORMAT.md §1.8)
        self.b = b

    def check_hash(self, h: int, exp):
        if exp is None:
            idx = 0
        else:
            bucket = exp // self.width
            if bucket < self.oldest:
                return "expired"
            d = bucket - self.oldest
            idx = 0 if d >= self.ring_len else 1 + d
        (_, blocks, offset) = self.dir[idx]
        if blocks == 0:
            return "clear"
        i = ((h >> 32) * blocks) >> 32
        words = struct.unpack_from("<8Q", self.b, offset + 64 * i)
        low = h & 0xFFFFFFFF
        for j in range(8):
            bit = ((low * SALT[j]) & 0xFFFFFFFF) >> 26
            if not (words[j] >> bit) & 1:
                return "clear"
        return "maybe_revoked"

    def check(self, jti: str, exp=None, iss: str = None):
        return self.check_hash(key_hash(self.seed, jti.encode(), iss and iss.encode()), exp)

    def cutoff(self, iss, claim: str, value: str):
        base = self.seed if iss is None else xxh3(iss.encode(), self.seed) ^ GOLDEN
        c = xxh3(claim.encode(), base ^ 0x6375746F66662E31) ^ GOLDEN
        fp = xxh3(value.encode(), c)
        return dict(self.cutoffs).get(fp)

    def apply_delta(self, d: bytes) -> "Snapshot":
        (magic, version, flags, res) = struct.unpack_from("<8sHHI", d, 0)
        (seed, layout_id, parent, generation, created, coverage) = struct.unpack_from("<6Q", d, 16)
        (nrec, ncut, res2) = struct.unpack_from("<IIQ", d, 64)
        if magic != b"RVBLDLTA" or version != 1 or flags & ~1 or res or res2:
            raise Invalid("delta header")
        trailer = 80 + 12 * nrec + 16 * ncut
        if len(d) != trailer + 8 + (64 if flags & 1 else 0):
            raise Invalid("delta length")
        if struct.unpack_from("<Q", d, trailer)[0] != xxh3(d[:trailer]):
            raise Invalid("delta checksum")
        if seed != self.seed or layout_id != self.layout_id or parent != self.generation or generation <= parent:
            raise Invalid("delta does not apply to this snapshot")
        cut_off = struct.unpack_from("<Q", self.b, 128)[0]
        out = bytearray(self.b[:cut_off])
        for r in range(nrec):
            (idx, h) = struct.unpack_from("<IQ", d, 80 + 12 * r)
            (_, blocks, offset) = self.dir[idx]
            if blocks == 0:
                raise Invalid("record targets an empty bucket")
            base = offset + 64 * (((h >> 32) * blocks) >> 32)
            low = h & 0xFFFFFFFF
            for j in range(8):
                bit = ((low * SALT[j]) & 0xFFFFFFFF) >> 26
                w = struct.unpack_from("<Q", out, base + 8 * j)[0] | (1 << bit)
                struct.pack_into("<Q", out, base + 8 * j, w)
            at = 160 + 32 * idx + 8
            struct.pack_into("<Q", out, at, struct.unpack_from("<Q", out, at)[0] + 1)
        merged = dict(self.cutoffs)
        for c in range(ncut):
            (fp, before) = struct.unpack_from("<QQ", d, 80 + 12 * nrec + 16 * c)
            merged[fp] = max(before, merged.get(fp, 0))
        for fp in sorted(merged):
            out += struct.pack("<QQ", fp, merged[fp])
        flags = (struct.unpack_from("<H", out, 10)[0] & ~1 & ~2) | (2 if merged else 0)
        struct.pack_into("<H", out, 10, flags)
        struct.pack_into("<I", out, 124, len(merged))
        for off, v in ((64, generation), (72, parent), (96, created), (104, coverage), (136, len(out))):
            struct.pack_into("<Q", out, off, v)
        out += struct.pack("<Q", xxh3(bytes(out)))
        return Snapshot(bytes(out))


def selftest():
    now = 1_767_225_600
    data = "tests/data/"
    revoked = [("jti-alpha", now + 600), ("jti-beta", now + 5 * 3600), ("jti-gamma", now + 23 * 3600),
               ("jti-far", now + 40 * 3600), ("jti-noexp", None)]
    added = [("jti-delta-1", now + 1200), ("jti-delta-2", now + 5 * 3600 + 60), ("jti-delta-3", None)]
    absent = [("jti-absent-1", now + 600), ("jti-absent-2", now + 5 * 3600), ("jti-absent-3", None)]
    for name in ("v1-small-unsigned.snap", "v1-small-signed.snap"):
        s = Snapshot(open(data + name, "rb").read())
        assert all(s.check(j, e) == "maybe_revoked" for j, e in revoked)
        assert all(s.check(j, e) == "clear" for j, e in absent)
        assert s.check("jti-alpha", now - 3 * 3600) == "expired"
        assert s.cutoff(None, "sub", "alice") == now - 60
        n = s.apply_delta(open(data + "v1-small-gen1-to-gen2.delta", "rb").read())
        assert n.generation == 2 and n.cutoff(None, "sub", "bob") == now
        assert all(n.check(j, e) == "maybe_revoked" for j, e in revoked + added)
        assert all(n.check(j, e) == "clear" for j, e in absent)
        flipped = bytearray(s.b)
        flipped[200] ^= 1
        try:
            Snapshot(bytes(flipped))
            raise AssertionError("a flipped bit was accepted")
        except Invalid:
            pass
    print("selftest ok: the spec-only reader agrees with the golden fixtures")


if __name__ == "__main__":
    if sys.argv[1:] == ["--selftest"]:
        selftest()
    elif len(sys.argv) in (3, 4):
        snap = Snapshot(open(sys.argv[1], "rb").read())
        print(snap.check(sys.argv[2], int(sys.argv[3]) if len(sys.argv) == 4 else None))
    else:
        print(__doc__)
        sys.exit(2)
