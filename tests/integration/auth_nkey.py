"""auth_nkey.py KEY.pem: the NATS user NKey of an Ed25519 key made by openssl, printed as two
lines: the seed (SU...) and the public key (U...). The encoding is NATS's: base32 (no padding)
of prefix byte(s) + 32 key bytes + CRC16-XMODEM (little-endian). No pip packages: the raw key
bytes come from openssl's DER output (the last 32 bytes of PKCS#8 and of SubjectPublicKeyInfo)."""
import base64
import subprocess
import sys

pem = sys.argv[1]


def der(*args):
    return subprocess.run(["openssl", "pkey", "-in", pem, "-outform", "DER", *args],
                          check=True, capture_output=True).stdout[-32:]


def crc16(data):
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) & 0xFFFF if crc & 0x8000 else (crc << 1) & 0xFFFF
    return crc


def enc(raw):
    c = crc16(raw)
    return base64.b32encode(raw + bytes([c & 0xFF, c >> 8])).decode().rstrip("=")


USER = 20 << 3   # 'U'
SEED = 18 << 3   # 'S'
seed, pub = der(), der("-pubout")
print(enc(bytes([SEED | USER >> 5, (USER & 31) << 3]) + seed))
print(enc(bytes([USER]) + pub))
