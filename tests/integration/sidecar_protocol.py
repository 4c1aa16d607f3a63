"""sidecar_protocol.py: the connector protocol of `asya-state serve`, endpoint by endpoint,
against a real nats-server, cross-checked with kvtool (an independent nats.c client).

Environment (set by t_sidecar.sh): SOCK and SOCK2 (two sidecars on BUCKET with STATE_PREFIX
PREFIX), SMALL_SOCK (a sidecar on SMALL_BUCKET, max value 1024 bytes, --max-body 4096),
KVTOOL, NATS_URL. Prints "ok - ..." / "not ok - ..." lines; exit status 1 on any failure.
"""

import json
import os
import socket
import subprocess
import sys
import threading
import time
import urllib.parse

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from sidecar_client import Checks, quote_key, request  # noqa: E402

SOCK, SOCK2, SMALL = os.environ["SOCK"], os.environ["SOCK2"], os.environ["SMALL_SOCK"]
BUCKET, SMALL_BUCKET = os.environ["BUCKET"], os.environ["SMALL_BUCKET"]
PREFIX, KVTOOL = os.environ["PREFIX"], os.environ["KVTOOL"]
QSOCK = os.environ.get("QSOCK")  # a sidecar on BUCKET/PREFIX with STATE_READ_CACHE=watch
T = Checks()


def kv(*args, check=True):
    p = subprocess.run([KVTOOL, *args], capture_output=True)
    if check and p.returncode != 0:
        raise RuntimeError(f"kvtool {' '.join(args)}: {p.stderr.decode().strip()}")
    return p


def kv_get(key):
    """The value stored under the NATS key of wire key `key`, or None when missing."""
    p = kv("get", BUCKET, f"{PREFIX}.{key}", check=False)
    return p.stdout if p.returncode == 0 else None


def k(key):
    return "/keys/" + quote_key(key)


def err_of(body):
    try:
        return json.loads(body).get("error")
    except ValueError:
        return f"not JSON: {body[:80]!r}"


def healthy():
    st, _, body = request(SOCK, "GET", "/healthz")
    return st == 200 and json.loads(body) == {"status": "ready"}


def raw(sock_path, data, shut=True, timeout=10):
    """Sends raw bytes, returns what comes back until the server closes or goes quiet."""
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.connect(sock_path)
    s.sendall(data)
    if shut:
        s.shutdown(socket.SHUT_WR)
    out = b""
    try:
        while True:
            b = s.recv(65536)
            if not b:
                break
            out += b
    except socket.timeout:
        pass
    s.close()
    return out


def status_of(resp):
    try:
        return int(resp.split(b" ", 2)[1])
    except (IndexError, ValueError):
        return None


# ---- endpoints -----------------------------------------------------------------------

def t_healthz():
    st, h, body = request(SOCK, "GET", "/healthz")
    T.eq("GET /healthz 200 ready", (200, {"status": "ready"}), (st, json.loads(body)))
    T.eq("healthz is JSON", "application/json", h.get("content-type"))


def t_put_get_head_delete():
    st, _, _ = request(SOCK, "PUT", k("user_123.json"), body=b'{"n": 1}')
    T.eq("PUT /keys/user_123.json 204", 204, st)
    T.eq("value stored under PREFIX.user_123.json (kvtool)", b'{"n": 1}', kv_get("user_123.json"))
    st, h, body = request(SOCK, "GET", k("user_123.json"))
    T.eq("GET returns the value", (200, b'{"n": 1}'), (st, body))
    T.eq("GET Content-Length", "8", h.get("content-length"))
    st, h, body = request(SOCK, "HEAD", k("user_123.json"))
    T.eq("HEAD 204, Content-Length, X-Is-File true, no body",
         (204, "8", "true", b""), (st, h.get("content-length"), h.get("x-is-file"), body))
    T.true("HEAD and GET carry Last-Modified (the revision's time)",
           bool(h.get("last-modified")), str(h))
    kv("put", BUCKET, f"{PREFIX}.from_kvtool", "written elsewhere")
    st, _, body = request(SOCK, "GET", k("from_kvtool"))
    T.eq("GET of a key kvtool wrote", (200, b"written elsewhere"), (st, body))
    st, _, _ = request(SOCK, "DELETE", k("user_123.json"))
    T.eq("DELETE 204", 204, st)
    T.eq("deleted for kvtool too", None, kv_get("user_123.json"))
    st, _, body = request(SOCK, "GET", k("user_123.json"))
    T.eq("GET after DELETE 404 key_not_found", (404, "key_not_found"), (st, err_of(body)))
    st, _, body = request(SOCK, "DELETE", k("user_123.json"))
    T.eq("DELETE of a missing key 404 key_not_found", (404, "key_not_found"), (st, err_of(body)))
    st, _, body = request(SOCK, "HEAD", k("never_there"))
    T.eq("HEAD of a missing key 404, no body", (404, b""), (st, body))
    st, _, body = request(SOCK, "PUT", k("empty"), body=b"")
    st2, _, body2 = request(SOCK, "GET", k("empty"))
    T.eq("an empty value round-trips", (204, 200, b""), (st, st2, body2))


def t_binary_and_escaping():
    value = bytes(range(256)) * 4
    name = "dir_one/na=me+1%.txt"
    st, _, _ = request(SOCK, "PUT", k(name), body=value)
    st2, _, body = request(SOCK, "GET", k(name))
    T.eq("binary value, odd key: PUT then GET", (204, 200, value), (st, st2, body))
    keys = kv("keys", BUCKET).stdout.decode().split()
    T.true("odd key escaped as SPEC says (=20, =3D, =25)",
           f"{PREFIX}.dir_one/na=3Dme=2B1=25.txt" in keys, f"keys: {keys}")
    st, _, body = request(SOCK, "GET", "/keys/?" + urllib.parse.urlencode(
        {"prefix": "dir_one/", "delimiter": "/"}))
    T.eq("listing gives the odd key back unchanged",
         {"keys": [name], "prefixes": []}, json.loads(body))


def raw_req(method, target, body=b""):
    """One request with a raw target (bytes the runtime's http.client would refuse)."""
    head = (method.encode() + b" " + target + b" HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" +
            b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n")
    resp = raw(SOCK, head + body, shut=False)
    return status_of(resp), resp.partition(b"\r\n\r\n")[2]


def t_not_utf8():
    st, _ = raw_req("PUT", b"/keys/bin/\xff", b"raw byte name")
    st2, body = raw_req("GET", b"/keys/bin/\xff")
    T.eq("a raw non-UTF-8 byte in a key round-trips, stored as =FF",
         (204, 200, b"raw byte name", b"raw byte name"), (st, st2, body, kv_get("bin/=FF")))
    st, body = raw_req("GET", b"/keys/bin/\xfe")
    T.eq("an error about a non-UTF-8 key is still JSON", (404, "key_not_found"),
         (st, err_of(body)))
    raw_req("PUT", b"/keys/bin/plain", b"x")
    st, _, body = request(SOCK, "GET", "/keys/?prefix=bin/&delimiter=/")
    T.eq("one non-UTF-8 name never fails a listing: left out (with a warning), the rest 200",
         (200, {"keys": ["bin/plain"], "prefixes": []}),
         (st, json.loads(body) if st == 200 else err_of(body)))
    raw_req("DELETE", b"/keys/bin/plain")
    raw_req("DELETE", b"/keys/bin/\xff")
    # JSON answers are json.dumps's bytes: \uxxxx in lowercase hex, DEL escaped too
    raw_req("PUT", "/keys/jb/é\x7f".encode(), b"x")
    st, body = raw_req("GET", b"/keys/?prefix=jb/&delimiter=/")
    st2, body2 = raw_req("GET", "/keys/jb/ü\x7f".encode())
    T.eq("JSON bodies byte for byte as json.dumps writes them (a listing, an error)",
         (200, body, 404, body2),
         (st, json.dumps(json.loads(body)).encode(), st2, json.dumps(json.loads(body2)).encode()))
    T.true("... with the name's characters escaped", b"\\u00e9\\u007f" in body, body)
    raw_req("DELETE", "/keys/jb/é\x7f".encode())


def t_raw_keys():
    """The key is the raw path after /keys/, as Asya's server takes it (no decoding)."""
    st, _, _ = request(SOCK, "PUT", "/keys/raw/50%25off", body=b"half")
    T.eq("PUT /keys/raw/50%25off: the key is '50%25off', stored as 50=2525off",
         (204, b"half"), (st, kv_get("raw/50=2525off")))
    st, _, body = request(SOCK, "GET", "/keys/?prefix=raw/")
    T.eq("listing gives '50%25off' back, not '50%off'", ["raw/50%25off"],
         json.loads(body)["keys"])
    st, _, _ = request(SOCK, "PUT", "/keys/raw/100%", body=b"full")
    st2, _, body = request(SOCK, "GET", "/keys/raw/100%")
    T.eq("a bare % in a name: 204, reads back", (204, 200, b"full", b"full"),
         (st, st2, body, kv_get("raw/100=25")))
    st, _, _ = request(SOCK, "PUT", "/keys/raw/a+b", body=b"plus")
    T.eq("'+' stays '+' in a key (=2B), not a space", (204, b"plus", None),
         (st, kv_get("raw/a=2Bb"), kv_get("raw/a=20b")))
    for target, what in [("/keys/raw/a+b?x=1", "a query string"), ("/keys/raw/a+b#frag", "a fragment"),
                         ("/keys/raw/a+b;p=1", "';' params of the last segment")]:
        st, _, body = request(SOCK, "GET", target)
        T.eq(f"{what} is split off the key, as urlparse does", (200, b"plus"), (st, body))
    st, _ = raw_req("PUT", b"/keys/raw/sp ace", b"spaced")
    st2, body = raw_req("GET", b"/keys/raw/sp ace")
    T.eq("a raw space (which the runtime's http.client never sends) is part of the key",
         (204, 200, b"spaced", b"spaced"), (st, st2, body, kv_get("raw/sp=20ace")))
    st, _, body = request(SOCK, "GET", "/keys/raw/sp%20ace")
    T.eq("%20 is not decoded: another key", (404, "key_not_found"), (st, err_of(body)))
    st, _, body = request(SOCK, "GET", "/keys/?prefix=raw/a%2Bb&delimiter=/")
    T.eq("query strings decode as parse_qs: %2B is '+'", ["raw/a+b"], json.loads(body)["keys"])
    st, _, body = request(SOCK, "GET", "/keys/?prefix=raw/a+b&delimiter=/")
    T.eq("query strings decode as parse_qs: '+' is a space", [], json.loads(body)["keys"])


def t_exclusive_create():
    st, _, _ = request(SOCK, "PUT", k("excl"), body=b"first", headers={"If-None-Match": "*"})
    T.eq("If-None-Match: * on a new key 204", 204, st)
    st, _, body = request(SOCK2, "PUT", k("excl"), body=b"second",
                          headers={"If-None-Match": "*"})
    T.eq("If-None-Match: * on an existing key 409 conflict", (409, "conflict"),
         (st, err_of(body)))
    T.eq("...with Asya's message", "Exclusive create failed: key=excl already exists",
         json.loads(body).get("message"))
    T.eq("the existing value is kept", b"first", kv_get("excl"))


def t_cas():
    kv("put", BUCKET, f"{PREFIX}.counter", "1")
    request(SOCK, "GET", k("counter"))              # sidecar 1 remembers the revision
    st, _, body = request(SOCK2, "GET", k("counter"))
    request(SOCK2, "PUT", k("counter"), body=b"2")  # a second client moves the key
    st, _, body = request(SOCK, "PUT", k("counter"), body=b"2")
    T.eq("PUT after another client's write 409 conflict", (409, "conflict"), (st, err_of(body)))
    T.true("...message 'CAS conflict: key=counter ...'",
           json.loads(body).get("message", "").startswith("CAS conflict: key=counter "), body)
    T.eq("the other client's value is kept", b"2", kv_get("counter"))
    _, _, v = request(SOCK, "GET", k("counter"))     # the retry re-reads...
    st, _, _ = request(SOCK, "PUT", k("counter"), body=str(int(v) + 1).encode())
    T.eq("...and then succeeds", (204, b"3"), (st, kv_get("counter")))
    request(SOCK, "GET", k("counter"))
    kv("put", BUCKET, f"{PREFIX}.counter", "100")   # an outside writer (kvtool)
    st, _, _ = request(SOCK, "PUT", k("counter"), body=b"4")
    T.eq("PUT after an outside writer 409, value kept", (409, b"100"), (st, kv_get("counter")))
    request(SOCK, "GET", k("gone"))                  # remembered "absent"
    kv("put", BUCKET, f"{PREFIX}.gone", "appeared")
    st, _, _ = request(SOCK, "PUT", k("gone"), body=b"mine")
    T.eq("PUT after reading absent, key created meanwhile: 409", (409, b"appeared"),
         (st, kv_get("gone")))
    st, _, _ = request(SOCK, "PUT", k("fresh_unread"), body=b"x")
    st2, _, _ = request(SOCK, "PUT", k("fresh_unread"), body=b"y")
    T.eq("PUT twice without a read: both succeed (memory follows own writes)", (204, 204, b"y"),
         (st, st2, kv_get("fresh_unread")))
    request(SOCK, "DELETE", k("fresh_unread"))      # no read outstanding: forgotten
    kv("put", BUCKET, f"{PREFIX}.fresh_unread", "z")
    st, _, _ = request(SOCK, "PUT", k("fresh_unread"), body=b"after")
    T.eq("after a DELETE with no read outstanding nothing is remembered: unconditional PUT",
         (204, b"after"), (st, kv_get("fresh_unread")))
    request(SOCK, "GET", k("fresh_unread"))
    request(SOCK, "DELETE", k("fresh_unread"))      # the read may be another client's
    kv("put", BUCKET, f"{PREFIX}.fresh_unread", "z")
    st, _, _ = request(SOCK, "PUT", k("fresh_unread"), body=b"after")
    st2, _, _ = request(SOCK, "PUT", k("fresh_unread"), body=b"again")
    T.eq("a read, a DELETE, another writer: the PUT 409 (the read still guards), the next one "
         "lands", (409, 204, b"again"), (st, st2, kv_get("fresh_unread")))


def t_listing():
    for key in ["l/a.json", "l/b.json", "l/sub/c.json", "l/sub/deep/d.json", "l/sub2/e"]:
        request(SOCK, "PUT", k(key), body=key.encode())
    request(SOCK, "PUT", k("l/emptydir/"), body=b"")

    def ls(prefix, delimiter=None):
        q = {"prefix": prefix}
        if delimiter is not None:
            q["delimiter"] = delimiter
        st, _, body = request(SOCK, "GET", "/keys/?" + urllib.parse.urlencode(q))
        return st, json.loads(body)

    T.eq("list prefix l/ delimiter /: one level",
         (200, {"keys": ["l/a.json", "l/b.json"],
                "prefixes": ["l/emptydir/", "l/sub/", "l/sub2/"]}), ls("l/", "/"))
    T.eq("list below: prefix l/sub/",
         (200, {"keys": ["l/sub/c.json"], "prefixes": ["l/sub/deep/"]}), ls("l/sub/", "/"))
    T.eq("list without delimiter: '/' (Asya's default), one level",
         ls("l/", "/"), ls("l/"))
    T.eq("a blank delimiter counts as absent (parse_qs): '/'", ls("l/", "/"), ls("l/", ""))
    T.eq("list with a partial name: prefix l/sub",
         (200, {"keys": [], "prefixes": ["l/sub/", "l/sub2/"]}), ls("l/sub", "/"))
    T.eq("list of a missing directory is empty", (200, {"keys": [], "prefixes": []}),
         ls("nothing/", "/"))
    st, root = ls("", "/")
    T.true("list at root: files and l/ prefix",
           st == 200 and "excl" in root["keys"] and "l/" in root["prefixes"] and
           all("/" not in x for x in root["keys"]), str(root))
    st, allkeys = ls("")
    T.eq("list at root without delimiter: one level too", (200, root), (st, allkeys))
    st, _, body = request(SOCK, "GET", "/keys?prefix=l/&delimiter=/")
    T.eq("GET /keys (no slash) lists too", 200, st)
    st, _, body = request(SOCK, "GET", "/keys/?prefix=l/&delimiter=%2C")
    T.eq("a delimiter other than / is 400", (400, "bad_request"), (st, err_of(body)))
    st, _, body = request(SOCK, "GET", "/keys/?prefix=l/../&delimiter=/")
    T.eq("a prefix with .. is 400", (400, "bad_request"), (st, err_of(body)))


def t_directories():
    st, h, _ = request(SOCK, "HEAD", k("l/sub"))
    T.eq("HEAD of a directory: 204, X-Is-File false", (204, "false"), (st, h.get("x-is-file")))
    st, h, _ = request(SOCK, "HEAD", k("l/emptydir/"))
    T.eq("HEAD of an empty directory (marker)", (204, "false"), (st, h.get("x-is-file")))
    st, _, body = request(SOCK, "PUT", k("l/emptydir/"), body=b"",
                          headers={"If-None-Match": "*"})
    T.eq("create-only mkdir of an existing directory 409", 409, st)
    st, _, body = request(SOCK, "DELETE", k("l/sub/"))
    T.eq("DELETE of a non-empty directory 404 (as Asya's S3 connector)",
         (404, "key_not_found"), (st, err_of(body)))
    st, _, body = request(SOCK, "DELETE", k("l/sub"))
    T.eq("DELETE of a directory named without '/' 404", (404, "key_not_found"),
         (st, err_of(body)))
    st, _, _ = request(SOCK, "DELETE", k("l/emptydir/"))
    st2, _, _ = request(SOCK, "HEAD", k("l/emptydir/"))
    T.eq("DELETE of an empty directory 404, nothing removed", (404, 204), (st, st2))


def t_file_and_directory():
    """One name, a value and keys below it, as an object store (Asya's S3 connector) keeps
    them: both are listed, HEAD and GET answer the value, nothing below is hidden."""

    def ls(prefix):
        st, _, body = request(SOCK, "GET", "/keys/?prefix=" + urllib.parse.quote(prefix) +
                              "&delimiter=/")
        return st, json.loads(body)

    for order in (["fd1/a.txt", "fd1/a.txt/sub"], ["fd2/a.txt/sub", "fd2/a.txt"]):
        for key in order:
            request(SOCK, "PUT", k(key), body=key.encode())
        d = order[0].split("/")[0]
        st, h, _ = request(SOCK, "HEAD", k(d + "/a.txt"))
        T.eq(f"{order}: HEAD of the name answers the value", (204, "true", str(len(d) + 6)),
             (st, h.get("x-is-file"), h.get("content-length")))
        T.eq(f"{order}: the listing has the value and the directory",
             (200, {"keys": [d + "/a.txt"], "prefixes": [d + "/a.txt/"]}), ls(d + "/"))
        T.eq(f"{order}: ... and below it, the key", (200, {"keys": [d + "/a.txt/sub"],
             "prefixes": []}), ls(d + "/a.txt/"))
        T.eq(f"{order}: both values stored (kvtool)",
             ((d + "/a.txt").encode(), (d + "/a.txt/sub").encode()),
             (kv_get(d + "/a.txt"), kv_get(d + "/a.txt/sub")))
    # a value, then another client's key below it without a marker: the listing of the
    # directory writes its marker, and HEAD still answers the value
    request(SOCK, "PUT", k("fd3/a"), body=b"value-a")
    kv("put", BUCKET, f"{PREFIX}.fd3/a/b", "child")
    listed = ls("fd3/a/")
    st, h, _ = request(SOCK, "HEAD", k("fd3/a"))
    T.eq("another client's key below a value: listed, and HEAD still answers the value",
         ((200, {"keys": ["fd3/a/b"], "prefixes": []}), 204, "true", "7"),
         (listed, st, h.get("x-is-file"), h.get("content-length")))
    st, _, _ = request(SOCK, "DELETE", k("fd2/a.txt"))
    st2, h, _ = request(SOCK, "HEAD", k("fd2/a.txt"))
    T.eq("DELETE of the value leaves the directory: HEAD says directory",
         (204, 204, "false"), (st, st2, h.get("x-is-file")))
    T.eq("... and the listing has only the directory",
         (200, {"keys": [], "prefixes": ["fd2/a.txt/"]}), ls("fd2/"))


def t_meta():
    request(SOCK, "PUT", k("m.json"), body=b"v1")
    rev = int(kv("rev", BUCKET, f"{PREFIX}.m.json").stdout)
    st, _, body = request(SOCK, "GET", "/meta/m.json?attr=version")
    T.eq("GET /meta/{key}?attr=version = kvtool rev",
         (200, {"attr": "version", "value": str(rev)}), (st, json.loads(body)))
    st, _, body = request(SOCK, "GET", "/meta/m.json")
    T.eq("GET /meta/{key} lists version", (200, {"attrs": ["version"]}), (st, json.loads(body)))
    kv("put", BUCKET, f"{PREFIX}.m.json", "v2")
    st, _, body = request(SOCK, "GET", "/meta/m.json?attr=version")
    T.eq("version is read fresh", str(rev + 1), json.loads(body).get("value"))
    st, _, body = request(SOCK, "PUT", "/meta/m.json?attr=version",
                          body=json.dumps({"value": "7"}))
    T.eq("PUT /meta version 403 permission_denied", (403, "permission_denied"),
         (st, err_of(body)))
    st, _, body = request(SOCK, "PUT", "/meta/m.json?attr=ttl", body=json.dumps({"value": "7"}))
    T.eq("PUT /meta unknown attr 400 unsupported_attribute", (400, "unsupported_attribute"),
         (st, err_of(body)))
    st, _, body = request(SOCK, "PUT", "/meta/m.json", body=b"{}")
    T.eq("PUT /meta without attr 400", 400, st)
    st, _, body = request(SOCK, "PUT", "/meta/m.json?attr=version", body=b"{not json")
    T.eq("PUT /meta with a bad JSON body 400", 400, st)
    st, _, body = request(SOCK, "GET", "/meta/m.json?attr=color")
    T.eq("GET /meta unknown attr 400", (400, "unsupported_attribute"), (st, err_of(body)))
    st, _, body = request(SOCK, "GET", "/meta/missing.json?attr=version")
    T.eq("GET /meta of a missing key 404", (404, "key_not_found"), (st, err_of(body)))
    # the key before the attribute, as Asya's server with its connectors
    st, _, body = request(SOCK, "GET", "/meta/missing.json?attr=color")
    T.eq("GET /meta of a missing key, unknown attr: 404 first", (404, "key_not_found"),
         (st, err_of(body)))
    st, _, body = request(SOCK, "PUT", "/meta/missing.json?attr=ttl",
                          body=json.dumps({"value": "7"}))
    T.eq("PUT /meta of a missing key 404", (404, "key_not_found"), (st, err_of(body)))
    request(SOCK, "GET", k("m.json"))                 # remembers the current revision
    kv("put", BUCKET, f"{PREFIX}.m.json", "v3")      # moved by someone else
    request(SOCK, "GET", "/meta/m.json?attr=version")
    st, _, _ = request(SOCK, "PUT", k("m.json"), body=b"mine")
    T.eq("reading version changes no memory: the PUT still conflicts", (409, b"v3"),
         (st, kv_get("m.json")))


def t_bad_keys():
    for path, what in [("/keys/a/../b", ".."), ("/keys/./a", "."), ("/keys/a//b", "empty segment"),
                       ("/keys//", "only a slash")]:
        st, _, body = request(SOCK, "GET", path)
        T.eq(f"GET {path} ({what}) 400 bad_request", (400, "bad_request"), (st, err_of(body)))
    st, _, body = request(SOCK, "PUT", "/keys/" + "k" * 2000, body=b"x")
    T.eq("a key over 1024 bytes 400", (400, "bad_request"), (st, err_of(body)))


def t_too_large():
    st, _, body = request(SMALL, "PUT", k("big"), body=b"x" * 2000)
    T.eq("PUT over the bucket's max value size 413 too_large", (413, "too_large"),
         (st, err_of(body)))
    T.eq("nothing stored", 1, kv("get", SMALL_BUCKET, "big", check=False).returncode)
    kv("put", SMALL_BUCKET, "kept", "old")
    st, _, body = request(SMALL, "PUT", k("kept"), body=b"y" * 8000)
    T.eq("PUT over --max-body 413 too_large", (413, "too_large"), (st, err_of(body)))
    T.eq("existing value unchanged", b"old", kv("get", SMALL_BUCKET, "kept").stdout)

    def chunks():
        for _ in range(10):
            yield b"z" * 1000
    c_status = request(SMALL, "PUT", k("kept"), body=chunks())[0]  # an iterable: chunked
    T.eq("chunked PUT over --max-body 413, value unchanged", (413, b"old"),
         (c_status, kv("get", SMALL_BUCKET, "kept").stdout))
    st, _, _ = request(SMALL, "PUT", k("kept"), body=b"fits")
    T.eq("the server still works after 413s", (204, b"fits"),
         (st, kv("get", SMALL_BUCKET, "kept").stdout))


def t_chunked():
    parts = [b"alpha,", b"beta,", b"x" * 70000, b"end"]
    st, _, _ = request(SOCK, "PUT", k("chunked"), body=iter(parts))  # sent chunked
    T.eq("chunked PUT 204 and the value is the concatenation", (204, b"".join(parts)),
         (st, kv_get("chunked")))
    resp = raw(SOCK, b"PUT /keys/chunked2 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
               b"Connection: close\r\n\r\n5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
    T.eq("hand-written chunked PUT", (204, b"hello world"), (status_of(resp), kv_get("chunked2")))


def t_malformed():
    cases = [
        ("bad method PATCH", b"PATCH /keys/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
         (501,)),
        ("unknown method BREW", b"BREW /keys/a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
         (501,)),
        ("POST to a key", b"POST /keys/a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n"
         b"Connection: close\r\n\r\n", (404,)),
        ("bad Content-Length", b"PUT /keys/badlen HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n"
         b"Connection: close\r\n\r\nhello", (400,)),
        ("negative Content-Length", b"PUT /keys/badlen HTTP/1.1\r\nHost: x\r\n"
         b"Content-Length: -5\r\nConnection: close\r\n\r\nhello", (400,)),
        ("garbage request line", b"\x01\x02garbage\r\n\r\n", (400, None)),  # or closed
        ("PUT without a key", b"PUT /keys/ HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n"
         b"Connection: close\r\n\r\nhi", (404,)),
        ("DELETE without a key", b"DELETE /keys/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
         (404,)),
        ("GET /meta/ without a key", b"GET /meta/ HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
         (404,)),
        ("unknown path", b"GET /nope HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", (404,)),
        ("bad chunk size", b"PUT /keys/badchunk HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked"
         b"\r\nConnection: close\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", (400,)),
    ]
    for name, data, want in cases:
        st = status_of(raw(SOCK, data))
        said = " or closed unanswered" if None in want else ""
        T.true(f"malformed: {name} answered {want[0]}{said}", st in want, f"status {st}")
    T.eq("nothing stored by the malformed PUTs", (None, None),
         (kv_get("badlen"), kv_get("badchunk")))
    # A body that stops short: the client promises 100 bytes, sends 10 and hangs up.
    kv("put", BUCKET, f"{PREFIX}.trunc", "before")
    raw(SOCK, b"PUT /keys/trunc HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n0123456789",
        timeout=2)
    raw(SOCK, b"PUT /keys/trunc_new HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhel", timeout=2)
    time.sleep(0.3)
    T.eq("truncated body: nothing changes", (b"before", None),
         (kv_get("trunc"), kv_get("trunc_new")))
    T.true("server healthy after malformed requests", healthy())


def t_keepalive():
    """Several requests on one connection (HTTP/1.1 keep-alive), as a pooled client would."""
    from sidecar_client import UnixHTTPConnection
    c = UnixHTTPConnection(SOCK)
    got = []
    for i in range(5):
        c.request("PUT", k(f"ka/{i}"), body=str(i).encode())
        r = c.getresponse()
        r.read()
        c.request("GET", k(f"ka/{i}"))
        r2 = c.getresponse()
        got.append((r.status, r2.status, r2.read()))
    c.close()
    T.eq("keep-alive: 5 PUT+GET on one connection",
         [(204, 200, str(i).encode()) for i in range(5)], got)


def t_statuses():
    st, h, body = request(SOCK, "GET", "/nothing")
    T.eq("an unknown path 404, body exactly Asya's", (404, b'{"error": "not_found"}'), (st, body))
    st, _, body = request(SOCK, "POST", "/keys/x", body=b"")
    T.eq("an unknown POST path 404 not_found", (404, "not_found"), (st, err_of(body)))
    st, _, body = request(SOCK, "PATCH", k("x"), body=b"")
    T.eq("an unknown method 501 not_implemented", (501, "not_implemented"), (st, err_of(body)))
    st, _, body = request(SOCK, "HEAD", "/healthz")
    T.eq("HEAD /healthz 404 (Asya's server has no HEAD there)", 404, st)
    st, _, body = request(SOCK, "GET", k("never_there.json"))
    T.eq("404 body exactly Asya's",
         b'{"error": "key_not_found", "message": "Key not found: never_there.json"}', body)
    st, _, body = request(SOCK, "DELETE", "/keys/")
    T.eq("DELETE /keys/ 404 not_found", (404, "not_found"), (st, err_of(body)))


def query(body, sock=None):
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    st, _, out = request(sock or SOCK, "POST", "/query", body=data,
                         headers={"Content-Type": "application/json"})
    try:
        return st, json.loads(out)
    except ValueError:
        return st, out


def t_query():
    docs = {"qry/a.json": {"id": "a", "status": "done", "n": 3, "m": {"model": "sdxl"}},
            "qry/b.json": {"id": "b", "status": "running", "n": 10, "m": {"model": "other"}},
            "qry/c.json": {"id": "c", "status": "done", "n": 1, "m": {"model": "sdxl"}},
            "qry/sub/d.json": {"id": "d", "status": "done", "m": {"model": "x"}},
            "qry-2/e.json": {"id": "e", "status": "done"}}
    for key, d in docs.items():
        request(SOCK, "PUT", k(key), body=json.dumps(d).encode())
    request(SOCK, "PUT", k("qry/notjson.txt"), body=b"not json {{")
    request(SOCK, "PUT", k("qry/empty"), body=b"")
    ids = lambda r: [x.get("id") for x in r["rows"]]  # noqa: E731

    st, r = query({"prefix": "qry/"})
    T.eq("/query prefix: every JSON document below, non-JSON skipped, total",
         (200, ["a", "b", "c", "d"], 4), (st, sorted(ids(r)), r["total"]))
    st, r = query({"prefix": "qry"})
    T.eq("/query prefix is a plain string prefix (qry matches qry-2/)", 5, r["total"])
    st, r = query({"prefix": "qry/", "filter": {"status": "done"}, "sort": ["id"]})
    T.eq("/query filter equality", (200, ["a", "c", "d"], 3), (st, ids(r), r["total"]))
    st, r = query({"prefix": "qry/", "filter": {"m.model": "sdxl"}, "sort": ["id"]})
    T.eq("/query filter on a dotted field", ["a", "c"], ids(r))
    st, r = query({"prefix": "qry/", "filter": {"status": "done", "m.model": "sdxl"}})
    T.eq("/query filter: every pair must hold", 2, r["total"])
    st, r = query({"prefix": "qry/", "filter": {"n": "3"}})
    T.eq("/query filter compares by text, as Asya's DuckDB query: '3' == 3", ["a"], ids(r))
    st, r = query({"prefix": "qry/", "filter": {"n": 10}})
    T.eq("/query filter with a number", ["b"], ids(r))
    st, r = query({"prefix": "qry/", "filter": {"nope": "x"}})
    T.eq("/query filter on a missing field matches nothing", (200, [], 0),
         (st, r["rows"], r["total"]))
    st, r = query({"prefix": "qry/", "sort": ["n"]})
    T.eq("/query sort ascending (numbers by value; missing last)", ["c", "a", "b", "d"], ids(r))
    st, r = query({"prefix": "qry/", "sort": ["-n"]})
    T.eq("/query sort descending with '-' (missing still last)", ["b", "a", "c", "d"], ids(r))
    st, r = query({"prefix": "qry/", "sort": ["status", "-id"]})
    T.eq("/query sort on two fields", ["d", "c", "a", "b"], ids(r))
    st, r = query({"prefix": "qry/", "sort": ["id"], "limit": 2})
    T.eq("/query limit; total before limit", (["a", "b"], 4), (ids(r), r["total"]))
    st, r = query({"prefix": "qry/", "sort": ["id"], "limit": 2, "offset": 2})
    T.eq("/query offset", (["c", "d"], 4), (ids(r), r["total"]))
    st, r = query({"prefix": "qry/", "sort": ["id"], "offset": 10})
    T.eq("/query offset past the end: no rows, total kept", ([], 4), (r["rows"], r["total"]))
    st, r = query({"prefix": "nothing-here/"})
    T.eq("/query empty prefix: 200, no rows", (200, {"rows": [], "total": 0}), (st, r))
    st, r = query(b"")
    T.eq("/query with an empty body: {} (every document)", 200, st)
    for body, what in [({"filter": ["status"]}, "filter not an object"),
                       ({"filter": "status=done"}, "filter a string"),
                       ({"sort": "id"}, "sort not an array"),
                       ({"sort": [1]}, "sort of a non-string"),
                       ({"limit": -1}, "negative limit"),
                       ({"offset": -2}, "negative offset"),
                       ({"limit": "ten"}, "limit not a number"),
                       ({"filter": {"bad field!": 1}}, "filter field name with a space"),
                       ({"filter": {"1abc": 1}}, "field name starting with a digit"),
                       ({"filter": {"": 1}}, "empty field name"),
                       ({"sort": ["-a;DROP"]}, "sort field name"),
                       ([1, 2], "body not an object"),
                       (b"not json", "body not JSON")]:
        st, r = query(body)
        T.eq(f"/query 400 bad_request: {what}", (400, "bad_request"),
             (st, r.get("error") if isinstance(r, dict) else r))
    st, r = query({"filter": {"bad field!": 1}})
    T.eq("/query invalid field message as Asya's", "invalid field name: 'bad field!'",
         r.get("message"))
    st, r = query({"prefix": "qry/", "filter": {"a_b.c_1": 1}})
    T.eq("/query field names with '_', '.', digits are fine", 200, st)
    request(SOCK, "PUT", k("qnul/a.json"), body=b'{"id": "a", "s": "x\\u0000y"}')
    st, r = query({"prefix": "qnul/", "filter": {"s": "x\u0000y"}})
    T.eq("/query: a document with \\u0000 in a string is answered, NUL and all", (200, 1, "x\0y"),
         (st, r["total"], r["rows"][0]["s"] if r["rows"] else None))
    request(SOCK, "PUT", k("qnul/b.json"), body=b'{"id": "b", "s": "x", "n": 1}')
    results = [query(q)[1]["total"] for q in (
        {"prefix": "qnul/", "filter": {"s": "x"}},          # "x\0y" is not "x"
        {"prefix": "qnul/", "filter": {"n": "1\u00002"}},   # a number's text is not cut
        {"prefix": "qnul/\u0000"})]                          # no key holds a NUL
    T.eq("/query: a NUL in a string is compared whole (filter and prefix)", [1, 0, 0], results)
    request(SOCK, "PUT", k("qbig/b.json"),
            body=b'{"id": "b", "n": 123456789012345678901234567890}')
    st, r = query({"prefix": "qbig/"})
    request(SOCK, "DELETE", k("qbig/b.json"))  # later queries of every document answer again
    T.eq("/query: an integer beyond 64 bits fails the query (500, naming the key), never "
         "left out", (500, "internal_error", True),
         (st, r.get("error"), "qbig/b.json" in r.get("message", "")))
    if QSOCK:
        time.sleep(0.5)  # the mirror catches up
        st, r = query({"prefix": "qry/", "filter": {"status": "done"}, "sort": ["id"]}, QSOCK)
        T.eq("/query through a sidecar with the read cache (mirror)", (200, ["a", "c", "d"]),
             (st, ids(r)))
        request(SOCK, "PUT", k("qry/f.json"), body=b'{"id": "f", "status": "done"}')
        time.sleep(0.3)
        st, r = query({"prefix": "qry/", "filter": {"status": "done"}, "sort": ["id"]}, QSOCK)
        T.eq("/query from the mirror sees another sidecar's write", ["a", "c", "d", "f"], ids(r))


def t_concurrent():
    n = 50
    errors, lock = [], threading.Lock()
    kv("put", BUCKET, f"{PREFIX}.shared", "shared value")
    barrier = threading.Barrier(n)

    def worker(i):
        try:
            barrier.wait(10)
            for j in range(4):
                body = f"client {i} round {j}".encode()
                st, _, _ = request(SOCK if i % 2 else SOCK2, "PUT", k(f"conc/c{i}"), body=body)
                st2, _, got = request(SOCK if i % 2 else SOCK2, "GET", k(f"conc/c{i}"))
                st3, _, shared = request(SOCK, "GET", k("shared"))
                if (st, st2, got, st3, shared) != (204, 200, body, 200, b"shared value"):
                    raise RuntimeError(f"client {i}: {(st, st2, got, st3, shared)}")
        except Exception as e:  # noqa: BLE001
            with lock:
                errors.append(str(e))

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(n)]
    t0 = time.time()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    dt = time.time() - t0
    T.eq(f"50 concurrent clients x 4 rounds (PUT, GET, GET shared) no error ({dt:.2f}s)",
         [], errors[:3])
    stored = [kv_get(f"conc/c{i}") for i in range(n)]
    T.eq("each client's last value stored (kvtool)",
         [f"client {i} round 3".encode() for i in range(n)], stored)
    st, _, body = request(SOCK, "GET", "/keys/?prefix=conc/&delimiter=/")
    T.eq("listing shows the 50 keys", n, len(json.loads(body)["keys"]))
    print(f"# sidecar: 50 clients, 600 requests in {dt:.2f}s", flush=True)


for name, fn in list(globals().items()):
    if name.startswith("t_") and callable(fn):
        T.run(name, fn)
sys.exit(1 if T.failures else 0)
