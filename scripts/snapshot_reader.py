#!/usr/bin/env python3
"""A second, independent snapshot/delta reader written from docs/FORMAT.md alone.

It exists to prove the spec is enough: run it on the golden fixtures and it must give the
verdicts the Rust reader gives, and applying a delta must give the Rust bytes. Reads format
versions 1 and 2, and unseals sealed envelopes (FORMAT.md §6). Needs Python 3 and the xxHash C
library (Debian: libxxhash0); with the `cryptography` package installed the selftest also
verifies Ed25519 signatures and unseals the sealed fixture (sealed files need it).

    python3 scripts/snapshot_reader.py tests/data/v2-small-unsigned.snap jti-alpha 1767226200
    python3 scripts/snapshot_reader.py --seal-key verifier.key snapshot.rbs jti-alpha 1767226200
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
CUTOFF_DOMAIN = 0x6375746F66662E31


def xxh3(data: bytes, seed: int = 0) -> int:
    return _xxh3(data, len(data), seed)


class Invalid(Exception):
    pass


def issuer_seed(seed, iss: bytes) -> int:
    return xxh3(iss, seed) ^ GOLDEN


def key_hash(seed, jti: bytes, iss: bytes = None) -> int:
    """FORMAT.md §3.1: the bare jti hash, or (version 1 issuer keying) issuer-qualified."""
    return xxh3(jti, seed if iss is None else issuer_seed(seed, iss))


def fingerprint(seed, iss, claim: str, value: str) -> int:
    """FORMAT.md §3.2."""
    base = seed if iss is None else issuer_seed(seed, iss.encode())
    c = xxh3(claim.encode(), base ^ CUTOFF_DOMAIN) ^ GOLDEN
    return xxh3(value.encode(), c)


def normalize_issuer(iss):
    """FORMAT.md §3.3: strip trailing '/'; empty means none."""
    iss = iss.rstrip("/") if iss is not None else None
    return iss or None


def sat(x):
    return min(x, M64)


def admit(bounds, exp, iat, now, created_at):
    """FORMAT.md §2.1: None when within bounds, else the reason."""
    (t, leeway, skew) = bounds
    if exp is None:
        return "out_of_bounds"
    if sat(exp + leeway) < now or sat(exp + leeway + skew) < created_at:
        return "expired"
    if exp > sat(now + t + skew) or (iat is not None and max(exp - iat, 0) > t):
        return "out_of_bounds"
    return None


def read_cutoff_claims(value):
    """FORMAT.md §1.7 type 2: the claim names, or raise."""
    names, pos = [], 0
    while pos < len(value):
        n = value[pos]
        name = value[pos + 1:pos + 1 + n]
        if not 1 <= n <= 64 or len(name) != n or len(names) == 8:
            raise Invalid("cutoff claims")
        try:
            name = name.decode("utf-8")
        except UnicodeDecodeError:
            raise Invalid("cutoff claim not UTF-8")
        if names and names[-1].encode() >= name.encode():
            raise Invalid("cutoff claims not strictly increasing")
        names.append(name)
        pos += 1 + n
    if not names:
        raise Invalid("cutoff claims empty")
    return names


def read_extensions(b, at, end):
    """FORMAT.md §1.7: returns (default issuer or None, cutoff claim names)."""
    pos, last, default_iss, claims = at, 0, None, []
    while pos < end:
        if pos + 8 > end:
            raise Invalid("extension record truncated")
        (ty, flags, vlen) = struct.unpack_from("<HHI", b, pos)
        if ty <= last or flags & ~1:
            raise Invalid("extension type order / reserved flags")
        vend = pos + 8 + vlen
        padded = at + -(-(vend - at) // 8) * 8
        if padded > end or any(b[vend:padded]):
            raise Invalid("extension value / padding")
        value = b[pos + 8:vend]
        if ty == 1:
            try:
                iss = value.decode("utf-8")
            except UnicodeDecodeError:
                raise Invalid("default issuer not UTF-8")
            if not (flags & 1) or not iss or len(value) > 1024 or iss.endswith("/"):
                raise Invalid("default issuer")
            default_iss = iss
        elif ty == 2:
            if not flags & 1:
                raise Invalid("cutoff claims not critical")
            claims = read_cutoff_claims(value)
        elif flags & 1:
            raise Invalid(f"unknown critical extension type {ty}")
        last, pos = ty, padded
    return default_iss, claims


class Snapshot:
    def __init__(self, b: bytes):
        if len(b) < 160:
            raise Invalid("truncated header")
        (magic, version, flags, alg) = struct.unpack_from("<8sHHB", b, 0)
        if magic != b"RVBLSNAP" or version not in (1, 2):
            raise Invalid("magic/version")
        self.version = version
        hl = self.header_len = 160 if version == 1 else 192
        if len(b) < hl:
            raise Invalid("truncated header")
        if flags & ~3 or alg != 1:
            raise Invalid("flags/algorithm")
        if any(b[13:16]) or any(b[144:160] if version == 1 else b[172:192]):
            raise Invalid("reserved header bytes")
        (self.seed, self.width, self.horizon, self.leeway) = struct.unpack_from("<4Q", b, 16)
        if self.width == 0 or self.horizon == 0 or self.horizon % self.width or self.leeway > self.horizon:
            raise Invalid("window parameters")
        if version == 1:
            self.bounds = (self.horizon, self.leeway, 0)
        else:
            (lifetime, skew) = struct.unpack_from("<2Q", b, 144)
            if lifetime == 0 or skew > 3600:
                raise Invalid("bounds")
            self.bounds = (lifetime, self.leeway, skew)
        (fp, load) = struct.unpack_from("<2d", b, 48)
        (self.generation, self.parent, self.layout_id, _epoch, self.created_at, self.coverage,
         self.oldest) = struct.unpack_from("<7Q", b, 64)
        (count, ncut, cut_off, trailer) = struct.unpack_from("<IIQQ", b, 120)
        if not (1e-6 <= fp < 1) or not (0 < load <= 512):
            raise Invalid("fp rate / load target")
        if self.generation == 0 or self.parent >= self.generation:
            raise Invalid("generation")
        span = self.horizon + 2 * self.leeway
        self.ring_len = -(-span // self.width) + 1
        if self.ring_len > 65536 or count != self.ring_len + 1 or self.oldest + self.ring_len >= M64:
            raise Invalid("bucket count / oldest")
        dir_end = hl + 32 * count
        if dir_end > len(b):
            raise Invalid("directory truncated")
        nxt = (dir_end + 63) & ~63
        if any(b[dir_end:nxt]):
            raise Invalid("padding")
        shape = bytearray()
        self.dir = []
        for i in range(count):
            (number, entries, blocks, reserved, offset) = struct.unpack_from("<QQIIQ", b, hl + 32 * i)
            want = M64 if i == 0 else self.oldest + i - 1
            if number != want or reserved or offset != nxt or nxt + 64 * blocks > len(b):
                raise Invalid(f"directory entry {i}")
            shape += struct.pack("<QI", number, blocks)
            self.dir.append((entries, blocks, offset))
            nxt += 64 * blocks
        cut_end = nxt + 16 * ncut
        if cut_off != nxt or (ncut > 0) != bool(flags & 2) or cut_end > len(b):
            raise Invalid("cutoff table offset / count")
        self.cut_off, self.default_iss, self.cutoff_claims, ext = cut_off, None, [], b""
        if version == 2:
            (ext_off, ext_len) = struct.unpack_from("<QI", b, 160)
            if ext_off != cut_end or ext_len % 8 or cut_end + ext_len > len(b):
                raise Invalid("extension section offset / length")
            self.default_iss, self.cutoff_claims = read_extensions(b, cut_end, cut_end + ext_len)
            ext = b[cut_end:cut_end + ext_len]
        if trailer != cut_end + len(ext):
            raise Invalid("trailer offset")
        self.signed = bool(flags & 1)
        if len(b) != trailer + 8 + (64 if self.signed else 0):
            raise Invalid("length")
        self.cutoffs = [struct.unpack_from("<QQ", b, cut_off + 16 * i) for i in range(ncut)]
        if any(self.cutoffs[i][0] >= self.cutoffs[i + 1][0] for i in range(ncut - 1)):
            raise Invalid("cutoffs not strictly sorted")
        oldest = struct.pack("<Q", self.oldest)
        if version == 1:
            layout = b"revbloom.layout.1" + b[16:64] + oldest + shape
        else:
            layout = b"revbloom.layout.2" + b[16:64] + b[144:160] + struct.pack("<Q", len(ext)) + ext + oldest + shape
        if xxh3(bytes(layout)) != self.layout_id:
            raise Invalid("layout id")
        if struct.unpack_from("<Q", b, trailer)[0] != xxh3(b[:trailer]):
            raise Invalid("checksum")
        # Ed25519 verification of the last 64 bytes over b[:trailer + 8]: FORMAT.md §1.9.
        self.ext, self.trailer, self.b = ext, trailer, b

    def entries(self):
        return sum(e for e, _, _ in self.dir)

    def check_hash(self, h: int, exp):
        """FORMAT.md §2.2."""
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
        """The filter verdict; `iss` only matters in version 1 with issuer keying (§2.3)."""
        iss = iss.encode() if iss is not None and self.version == 1 else None
        return self.check_hash(key_hash(self.seed, jti.encode(), iss), exp)

    def cutoff(self, iss, claim: str, value: str):
        """The `before` stored for one fingerprint, or None."""
        return dict(self.cutoffs).get(fingerprint(self.seed, iss, claim, value))

    def cutoff_revokes(self, iss, claim, value, iat, issuer_keyed=False):
        """FORMAT.md §2.3: whether the cutoffs revoke a token with this iss, claim and iat."""
        if self.version == 1:
            keys = [iss if issuer_keyed else None]
        else:
            eff = normalize_issuer(iss) or self.default_iss
            keys = ([eff] if eff else []) + [None]
        return any((before := self.cutoff(k, claim, value)) is not None and (iat is None or iat < before)
                   for k in keys)

    def check_token(self, jti, exp, iat, now, iss=None, claims=(), issuer_keyed=False):
        """FORMAT.md §2: 'out_of_bounds', 'expired', 'revoked', 'maybe_revoked' or 'clear'."""
        why = admit(self.bounds, exp, iat, now, self.created_at)
        if why or (jti is not None and len(jti.encode()) > 1024):
            return why or "out_of_bounds"
        verdict = "clear"
        if jti is not None:
            verdict = self.check(jti, exp, iss if issuer_keyed else None)
            if verdict == "expired":
                return verdict
        # A revocation without exp is a cutoff on the jti itself (listed as claim "jti").
        own = [("jti", jti)] if jti is not None and "jti" in self.cutoff_claims else []
        if any(self.cutoff_revokes(iss, c, v, iat, issuer_keyed) for c, v in own + list(claims)):
            return "revoked"
        return verdict

    def apply_delta(self, d: bytes) -> "Snapshot":
        """FORMAT.md §4.1: the resulting snapshot (exactly one delta in `d`)."""
        if len(d) < 80:
            raise Invalid("delta truncated")
        (magic, version, flags, res) = struct.unpack_from("<8sHHI", d, 0)
        (seed, layout_id, parent, generation, created, coverage) = struct.unpack_from("<6Q", d, 16)
        (nrec, ncut, res2) = struct.unpack_from("<IIQ", d, 64)
        known = 1 if version == 1 else 3
        if magic != b"RVBLDLTA" or version not in (1, 2) or flags & ~known or res or res2 or generation <= parent:
            raise Invalid("delta header")
        rec_end = 80 + 12 * nrec
        cut_end = rec_end + 16 * ncut
        trailer = cut_end + (64 if flags & 2 else 0)
        if len(d) != trailer + 8 + (64 if flags & 1 else 0):
            raise Invalid("delta length")
        records = [struct.unpack_from("<IQ", d, 80 + 12 * r) for r in range(nrec)]
        cuts = [struct.unpack_from("<QQ", d, rec_end + 16 * c) for c in range(ncut)]
        if records != sorted(records) or any(cuts[i][0] >= cuts[i + 1][0] for i in range(ncut - 1)):
            raise Invalid("delta records / cutoffs not sorted")
        if struct.unpack_from("<Q", d, trailer)[0] != xxh3(d[:trailer]):
            raise Invalid("delta checksum")
        result_sig = d[cut_end:trailer] if flags & 2 else b""
        if seed != self.seed or layout_id != self.layout_id:
            raise Invalid("delta is for another layout")
        if version != self.version:
            raise Invalid("delta version differs from the snapshot version")
        if parent != self.generation:
            raise Invalid("delta follows another generation")
        out = bytearray(self.b[:self.cut_off])
        for (idx, h) in records:
            if idx >= len(self.dir) or self.dir[idx][1] == 0:
                raise Invalid("record targets a missing or empty bucket")
            (_, blocks, offset) = self.dir[idx]
            base = offset + 64 * (((h >> 32) * blocks) >> 32)
            low = h & 0xFFFFFFFF
            for j in range(8):
                bit = ((low * SALT[j]) & 0xFFFFFFFF) >> 26
                w = struct.unpack_from("<Q", out, base + 8 * j)[0] | (1 << bit)
                struct.pack_into("<Q", out, base + 8 * j, w)
            at = self.header_len + 32 * idx + 8
            struct.pack_into("<Q", out, at, struct.unpack_from("<Q", out, at)[0] + 1)
        merged = dict(self.cutoffs)
        for (fp, before) in cuts:
            merged[fp] = max(before, merged.get(fp, 0))
        for fp in sorted(merged):
            out += struct.pack("<QQ", fp, merged[fp])
        if self.version == 2:
            struct.pack_into("<Q", out, 160, len(out))  # ext_offset
            out += self.ext
        flags_out = (struct.unpack_from("<H", out, 10)[0] & ~3) | (2 if merged else 0) | (1 if result_sig else 0)
        struct.pack_into("<H", out, 10, flags_out)
        struct.pack_into("<I", out, 124, len(merged))
        for off, v in ((64, generation), (72, parent), (96, created), (104, coverage), (136, len(out))):
            struct.pack_into("<Q", out, off, v)
        out += struct.pack("<Q", xxh3(bytes(out)))
        out += result_sig
        return Snapshot(bytes(out))


SEAL_MAGIC = b"RVBLSEAL"
SEAL_HEADER = 56


def _rotl32(v, n):
    return ((v << n) | (v >> (32 - n))) & 0xFFFFFFFF


def hchacha20(key: bytes, nonce16: bytes) -> bytes:
    """draft-irtf-cfrg-xchacha §2.2: the ChaCha20 block function's 20 rounds without the final
    addition; the subkey is state words 0..3 and 12..15."""
    st = [0x61707865, 0x3320646E, 0x79622D32, 0x6B206574]
    st += list(struct.unpack("<8I", key)) + list(struct.unpack("<4I", nonce16))

    def qr(a, b, c, d):
        st[a] = (st[a] + st[b]) & 0xFFFFFFFF; st[d] = _rotl32(st[d] ^ st[a], 16)
        st[c] = (st[c] + st[d]) & 0xFFFFFFFF; st[b] = _rotl32(st[b] ^ st[c], 12)
        st[a] = (st[a] + st[b]) & 0xFFFFFFFF; st[d] = _rotl32(st[d] ^ st[a], 8)
        st[c] = (st[c] + st[d]) & 0xFFFFFFFF; st[b] = _rotl32(st[b] ^ st[c], 7)

    for _ in range(10):
        qr(0, 4, 8, 12); qr(1, 5, 9, 13); qr(2, 6, 10, 14); qr(3, 7, 11, 15)
        qr(0, 5, 10, 15); qr(1, 6, 11, 12); qr(2, 7, 8, 13); qr(3, 4, 9, 14)
    return struct.pack("<8I", *(st[0:4] + st[12:16]))


def seal_key_id(key: bytes) -> bytes:
    import hashlib
    return hashlib.sha256(b"revbloom seal key id v1" + key).digest()[:8]


def unseal_prefix(b: bytes, keys):
    """FORMAT.md §6: (inner file, rest) of the envelope at the start of `b`."""
    from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
    if len(b) < SEAL_HEADER or b[:8] != SEAL_MAGIC:
        raise Invalid("not a sealed envelope")
    version, alg = struct.unpack_from("<HB", b, 8)
    if version != 1 or alg != 1 or any(b[11:16]):
        raise Invalid("unknown envelope version, algorithm or reserved bytes")
    key_id, nonce, n = b[16:24], b[24:48], struct.unpack_from("<Q", b, 48)[0]
    if n < 16 or SEAL_HEADER + n > len(b):
        raise Invalid("envelope length")
    key = next((k for k in keys if seal_key_id(k) == key_id), None)
    if key is None:
        raise Invalid(f"sealed with key id {key_id.hex()}, which no given key has")
    sub = hchacha20(key, nonce[:16])
    try:
        inner = ChaCha20Poly1305(sub).decrypt(bytes(4) + nonce[16:], b[SEAL_HEADER:SEAL_HEADER + n],
                                              b[:SEAL_HEADER])
    except Exception as e:
        raise Invalid("the envelope does not authenticate") from e
    return inner, b[SEAL_HEADER + n:]


def unseal(b: bytes, keys) -> bytes:
    inner, rest = unseal_prefix(b, keys)
    if rest:
        raise Invalid("bytes after the envelope")
    return inner


def ed25519_verify(pub: bytes, msg: bytes, sig: bytes):
    """True/False, or None when the `cryptography` package is not installed."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        return None
    try:
        Ed25519PublicKey.from_public_bytes(pub).verify(sig, msg)
        return True
    except InvalidSignature:
        return False


def fixture_public_key():
    try:
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
        from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
    except ImportError:
        return None
    return Ed25519PrivateKey.from_private_bytes(bytes([0x42] * 32)).public_key().public_bytes(
        Encoding.Raw, PublicFormat.Raw)


def rejects(f):
    try:
        f()
    except Invalid:
        return True
    return False


def selftest_extensions():
    """Type 2 records: names parsed, rule breaks refused."""
    def section(records):
        out = b""
        for ty, flags, value in records:
            out += struct.pack("<HHI", ty, flags, len(value)) + value
            out += bytes(-len(out) % 8)
        return out
    claims = bytes([3]) + b"jti" + bytes([3]) + b"sid" + bytes([3]) + b"sub"
    ext = section([(1, 1, b"https://idp"), (2, 1, claims)])
    assert read_extensions(ext, 0, len(ext)) == ("https://idp", ["jti", "sid", "sub"])
    for bad in (section([(2, 0, claims)]), section([(2, 1, bytes([3]) + b"sub" + bytes([3]) + b"sid")]),
                section([(2, 1, b"")]), section([(2, 1, bytes([4]) + b"sub")]), section([(3, 1, b"x")])):
        try:
            read_extensions(bad, 0, len(bad))
        except Invalid:
            continue
        raise AssertionError(f"accepted {bad!r}")


def selftest():
    selftest_extensions()
    now = 1_767_225_600
    data = "tests/data/"
    read = lambda name: open(data + name, "rb").read()
    revoked = [("jti-alpha", now + 600), ("jti-beta", now + 5 * 3600), ("jti-gamma", now + 23 * 3600),
               ("jti-far", now + 40 * 3600), ("jti-noexp", None)]
    added = [("jti-delta-1", now + 1200), ("jti-delta-2", now + 5 * 3600 + 60), ("jti-delta-3", None)]
    absent = [("jti-absent-1", now + 600), ("jti-absent-2", now + 5 * 3600), ("jti-absent-3", None)]
    pub = fixture_public_key()
    signatures = 0
    for v in ("v1", "v2"):
        snaps = {kind: Snapshot(read(f"{v}-small-{kind}.snap")) for kind in ("unsigned", "signed")}
        delta = read(f"{v}-small-gen1-to-gen2.delta")
        for kind, s in snaps.items():
            assert s.version == int(v[1]) and s.signed == (kind == "signed")
            assert all(s.check(j, e) == "maybe_revoked" for j, e in revoked)
            assert all(s.check(j, e) == "clear" for j, e in absent)
            assert s.check("jti-alpha", now - 3 * 3600) == "expired"
            assert (s.generation, s.created_at, s.entries()) == (1, now, len(revoked))
            assert s.cutoff(None, "sub", "alice") == now - 60
            if s.signed and pub:
                assert ed25519_verify(pub, s.b[:s.trailer + 8], s.b[-64:])
                signatures += 1
            n = s.apply_delta(delta)
            assert n.generation == 2 and not n.signed and n.cutoff(None, "sub", "bob") == now
            assert all(n.check(j, e) == "maybe_revoked" for j, e in revoked + added)
            assert all(n.check(j, e) == "clear" for j, e in absent)
            flipped = bytearray(s.b)
            flipped[200] ^= 1
            assert rejects(lambda: Snapshot(bytes(flipped))), "a flipped bit was accepted"
        other = "v1" if v == "v2" else "v2"
        assert rejects(lambda: snaps["unsigned"].apply_delta(read(f"{other}-small-gen1-to-gen2.delta")))

    # Version 1: bounds from the window, no default issuer.
    v1 = Snapshot(read("v1-small-unsigned.snap"))
    assert v1.bounds == (24 * 3600, 60, 0) and v1.default_iss is None

    # Version 2: bounds and default issuer from the file; keys on the jti alone.
    v2 = Snapshot(read("v2-small-unsigned.snap"))
    assert v2.bounds == (7 * 86_400, 60, 5) and v2.default_iss == "https://idp.example"
    assert all(v2.check(j, e, iss="https://other.example") == "maybe_revoked" for j, e in revoked)
    t = 7 * 86_400
    assert v2.check_token("jti-absent-1", now + 600, now, now) == "clear"
    assert v2.check_token("jti-alpha", now + 600, now, now) == "maybe_revoked"
    assert v2.check_token("jti-alpha", None, now, now) == "out_of_bounds"
    assert v2.check_token("x", now - 60, None, now) == "clear"
    assert v2.check_token("x", now - 61, None, now) == "expired"
    assert v2.check_token("x", now - 66, None, now - 100) == "expired"  # created_at is later
    assert v2.check_token("x", now - 65, None, now - 100) == "clear"
    assert v2.check_token("x", now + t + 5, None, now) == "clear"
    assert v2.check_token("x", now + t + 6, None, now) == "out_of_bounds"
    assert v2.check_token("x", now + 600, now + 600 - t - 1, now) == "out_of_bounds"
    assert v2.check_token("x" * 1025, now + 600, None, now) == "out_of_bounds"
    assert v1.check_token("x", now + 24 * 3600, None, now) == "clear"
    assert v1.check_token("x", now + 24 * 3600 + 1, None, now) == "out_of_bounds"
    # The issuer-less cutoff applies to every issuer and to tokens without one.
    alice = [("sub", "alice")]
    for iss in (None, "https://idp.example/", "https://other.example"):
        assert v2.check_token("x", now + 600, now - 61, now, iss, alice) == "revoked"
        assert v2.check_token("x", now + 600, now - 60, now, iss, alice) == "clear"
    assert v1.check_token("x", now + 600, now - 61, now, None, alice) == "revoked"

    # A signed delta carries the result's signature: applying it gives the publisher's signed
    # snapshot, from a signed or an unsigned base alike.
    sd = read("v2-small-gen1-to-gen2-signed.delta")
    result_sig = sd[-8 - 64 - 64:-8 - 64]
    results = [Snapshot(read(f"v2-small-{kind}.snap")).apply_delta(sd) for kind in ("signed", "unsigned")]
    r = results[0]
    assert results[1].b == r.b
    assert r.signed and r.generation == 2 and r.b.endswith(result_sig)
    assert struct.unpack_from("<Q", r.b, r.trailer)[0] == xxh3(r.b[:r.trailer])
    assert len(r.b) == r.trailer + 8 + 64 and r.default_iss == "https://idp.example"
    assert all(r.check(j, e) == "maybe_revoked" for j, e in revoked + added)
    assert all(r.check(j, e) == "clear" for j, e in absent)
    assert r.cutoff(None, "sub", "bob") == now
    unsigned_r = v2.apply_delta(read("v2-small-gen1-to-gen2.delta"))
    assert r.b[:10] == unsigned_r.b[:10]  # only flag bit 0 (SIGNED) and the tail differ
    assert r.b[12:r.trailer] == unsigned_r.b[12:unsigned_r.trailer]
    if pub:
        assert ed25519_verify(pub, sd[:-64], sd[-64:])
        assert ed25519_verify(pub, r.b[:r.trailer + 8], r.b[-64:])
        signatures += 3
    # FORMAT.md §6 vectors, and the sealed fixture: v2-small-unsigned.snap sealed by the Rust
    # writer under the key of 32 bytes 0x42.
    assert seal_key_id(bytes(32)).hex() == "512152cee3a4c95c"
    # draft-irtf-cfrg-xchacha §2.2.1 test vector.
    assert hchacha20(bytes(range(32)), bytes.fromhex("000000090000004a0000000031415927")).hex() == \
        "82413b4227b27bfed30e42508a877d73a0f9e4d58a74a853c12ec41326d3ecdc"
    sealed = read("v2-small-unsigned.sealed")
    assert sealed[:8] == SEAL_MAGIC and rejects(lambda: Snapshot(sealed))
    if pub:
        key = bytes([0x42] * 32)
        assert unseal(sealed, [bytes(32), key]) == read("v2-small-unsigned.snap")
        assert rejects(lambda: unseal(sealed, [bytes(32)]))
        tampered = bytearray(sealed)
        tampered[60] ^= 1
        assert rejects(lambda: unseal(bytes(tampered), [key]))
    print("selftest ok: the spec-only reader agrees with the v1 and v2 golden fixtures"
          + (f" ({signatures} Ed25519 signatures verified, sealed fixture unsealed)" if pub else
             " (Ed25519 and unsealing not checked: the cryptography package is not installed)"))


if __name__ == "__main__":
    if sys.argv[1:] == ["--selftest"]:
        selftest()
    elif len(sys.argv) in (5, 6) and sys.argv[1] == "--seal-key":
        key = bytes.fromhex(open(sys.argv[2]).read().strip())
        snap = Snapshot(unseal(open(sys.argv[3], "rb").read(), [key]))
        print(snap.check(sys.argv[4], int(sys.argv[5]) if len(sys.argv) == 6 else None))
    elif len(sys.argv) in (3, 4):
        snap = Snapshot(open(sys.argv[1], "rb").read())
        print(snap.check(sys.argv[2], int(sys.argv[3]) if len(sys.argv) == 4 else None))
    else:
        print(__doc__)
        sys.exit(2)
