"""sidecar_client.py: speaks to `asya-state serve` the way Asya's Python runtime does.

- UnixHTTPConnection / request(): HTTP/1.1 over the Unix socket (http.client with a socket
  subclass), one connection per operation, as the runtime opens them.
- raise_for_status(): the runtime's mapping of statuses to Python exceptions.
- StateHooks: what the runtime installs when ASYA_STATE_PROXY_MOUNTS is set: builtins.open,
  os.stat, os.listdir, os.remove/unlink, os.makedirs and os.getxattr/listxattr/setxattr
  redirected to the connector for paths under the mount, buffered writes sent whole on close
  (mode "x" sends If-None-Match: *).
- Checks: the "ok - NAME" / "not ok - NAME: reason" lines the integration runner counts.
"""

import builtins
import errno
import http.client
import io
import json
import os
import socket
import traceback
import urllib.parse


class UnixHTTPConnection(http.client.HTTPConnection):
    def __init__(self, path, timeout=30):
        super().__init__("localhost", timeout=timeout)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        s.connect(self.unix_path)
        self.sock = s


def request(sock, method, path, body=None, headers=None, timeout=30):
    """One request on a fresh connection; returns (status, headers dict, body bytes)."""
    c = UnixHTTPConnection(sock, timeout)
    try:
        c.request(method, path, body=body, headers=headers or {})
        r = c.getresponse()
        data = r.read()
        return r.status, {k.lower(): v for k, v in r.getheaders()}, data
    finally:
        c.close()


def read_answer(s):
    """The status and headers of an HTTP answer read from the raw socket s (the body is left
    unread)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = s.recv(65536)
        if not chunk:
            break
        data += chunk
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    status = int(head[0].split()[1]) if head[0] else 0
    hdrs = {k.lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
    return status, hdrs


def quote_key(key):
    """The key as Asya's runtime puts it in the path: raw, no percent-encoding (f"/keys/{key}";
    http.client refuses a space or control byte there, as it does for the runtime)."""
    return key


def raise_for_status(status, body, key):
    if 200 <= status < 300:
        return
    try:
        msg = json.loads(body).get("message") or f"state proxy error {status}"
    except (ValueError, AttributeError):
        msg = f"state proxy error {status}"
    msg = f"{msg} ({key})"
    if status == 404:
        raise FileNotFoundError(errno.ENOENT, msg)
    if status == 409:
        raise FileExistsError(errno.EEXIST, msg)
    if status == 400:
        raise ValueError(msg)
    if status == 403:
        raise PermissionError(errno.EPERM, msg)
    if status == 413:
        raise OSError(errno.EFBIG, msg)
    if status == 503:
        raise ConnectionError(msg)
    if status == 504:
        raise TimeoutError(msg)
    raise OSError(errno.EIO, msg)


class _WriteBuffer(io.BytesIO):
    """Buffered write: the whole value goes out in one PUT when the file is closed."""

    def __init__(self, hooks, key, exclusive, initial=b""):
        super().__init__(initial)
        self.seek(0, io.SEEK_END)
        self._hooks, self._key, self._excl, self._sent = hooks, key, exclusive, False

    def close(self):
        if not self._sent and not self.closed:
            self._sent = True
            headers = {"If-None-Match": "*"} if self._excl else {}
            st, _, body = request(self._hooks.sock, "PUT", "/keys/" + quote_key(self._key),
                                  body=self.getvalue(), headers=headers)
            super().close()
            raise_for_status(st, body, self._key)
        super().close()


class StateHooks:
    """Patches the builtins like the runtime does; undo with uninstall() (or use `with`)."""

    def __init__(self, mount, sock):
        self.mount = mount.rstrip("/") + "/"
        self.sock = sock
        self._saved = {}

    def key_of(self, path):
        path = os.fspath(path)
        if isinstance(path, bytes):
            path = path.decode()
        if path == self.mount.rstrip("/") or path == self.mount:
            return ""
        if path.startswith(self.mount):
            return path[len(self.mount):]
        return None

    # -- the patched functions --
    def _open(self, file, mode="r", *args, **kwargs):
        key = self.key_of(file) if isinstance(file, (str, bytes, os.PathLike)) else None
        if key is None:
            return self._saved["open"](file, mode, *args, **kwargs)
        text = "b" not in mode
        if any(m in mode for m in "wxa+"):
            initial = b""
            if "a" in mode or "+" in mode:
                st, _, body = request(self.sock, "GET", "/keys/" + quote_key(key))
                if st == 200:
                    initial = body
                elif st != 404:
                    raise_for_status(st, body, key)
            buf = _WriteBuffer(self, key, "x" in mode, initial)
            return io.TextIOWrapper(buf, encoding="utf-8") if text else buf
        st, _, body = request(self.sock, "GET", "/keys/" + quote_key(key))
        raise_for_status(st, body, key)
        raw = io.BytesIO(body)
        return io.TextIOWrapper(raw, encoding="utf-8") if text else raw

    def _listdir(self, path="."):
        key = self.key_of(path)
        if key is None:
            return self._saved["listdir"](path)
        prefix = key.rstrip("/") + "/" if key else ""
        q = urllib.parse.urlencode({"prefix": prefix, "delimiter": "/"})
        st, _, body = request(self.sock, "GET", "/keys/?" + q)
        raise_for_status(st, body, key)
        res = json.loads(body)
        names = [k[len(prefix):] for k in res["keys"]]
        names += [p[len(prefix):].rstrip("/") for p in res["prefixes"]]
        return sorted(names)

    def _remove(self, path, *args, **kwargs):
        key = self.key_of(path)
        if key is None:
            return self._saved["remove"](path, *args, **kwargs)
        st, _, body = request(self.sock, "DELETE", "/keys/" + quote_key(key))
        raise_for_status(st, body, key)

    def _stat(self, path, *args, **kwargs):
        key = self.key_of(path)
        if key is None:
            return self._saved["stat"](path, *args, **kwargs)
        st, headers, body = request(self.sock, "HEAD", "/keys/" + quote_key(key))
        raise_for_status(st, body, key)
        is_file = headers.get("x-is-file") == "true"
        mode = 0o100644 if is_file else 0o040755
        size = int(headers.get("content-length", "0"))
        return os.stat_result((mode, 0, 0, 1, 0, 0, size, 0, 0, 0))

    def _makedirs(self, path, mode=0o777, exist_ok=False):
        key = self.key_of(path)
        if key is None:
            return self._saved["makedirs"](path, mode, exist_ok)
        headers = {} if exist_ok else {"If-None-Match": "*"}
        st, _, body = request(self.sock, "PUT", "/keys/" + quote_key(key.rstrip("/") + "/"),
                              body=b"", headers=headers)
        raise_for_status(st, body, key)

    def _getxattr(self, path, attribute, *args, **kwargs):
        key = self.key_of(path)
        if key is None:
            return self._saved["getxattr"](path, attribute, *args, **kwargs)
        name = attribute.decode() if isinstance(attribute, bytes) else attribute
        short = name[len("user.asya."):] if name.startswith("user.asya.") else name
        st, _, body = request(self.sock, "GET", "/meta/" + quote_key(key) + "?attr=" +
                              urllib.parse.quote(short))
        raise_for_status(st, body, key)
        return str(json.loads(body)["value"]).encode()

    def _setxattr(self, path, attribute, value, *args, **kwargs):
        key = self.key_of(path)
        if key is None:
            return self._saved["setxattr"](path, attribute, value, *args, **kwargs)
        name = attribute.decode() if isinstance(attribute, bytes) else attribute
        short = name[len("user.asya."):] if name.startswith("user.asya.") else name
        v = value.decode() if isinstance(value, bytes) else value
        st, _, body = request(self.sock, "PUT", "/meta/" + quote_key(key) + "?attr=" +
                              urllib.parse.quote(short), body=json.dumps({"value": v}))
        raise_for_status(st, body, key)

    def _listxattr(self, path=None, *args, **kwargs):
        key = self.key_of(path) if path is not None else None
        if key is None:
            return self._saved["listxattr"](path, *args, **kwargs)
        st, _, body = request(self.sock, "GET", "/meta/" + quote_key(key))
        raise_for_status(st, body, key)
        return ["user.asya." + a for a in json.loads(body)["attrs"]]

    def install(self):
        self._saved = {"open": builtins.open, "listdir": os.listdir, "remove": os.remove,
                       "unlink": os.unlink, "stat": os.stat, "makedirs": os.makedirs,
                       "getxattr": os.getxattr, "setxattr": os.setxattr,
                       "listxattr": os.listxattr}
        builtins.open = self._open
        os.listdir, os.remove, os.unlink = self._listdir, self._remove, self._remove
        os.stat, os.makedirs = self._stat, self._makedirs
        os.getxattr, os.setxattr, os.listxattr = self._getxattr, self._setxattr, self._listxattr
        return self

    def uninstall(self):
        builtins.open = self._saved["open"]
        os.listdir, os.remove = self._saved["listdir"], self._saved["remove"]
        os.unlink, os.stat = self._saved["unlink"], self._saved["stat"]
        os.makedirs = self._saved["makedirs"]
        os.getxattr, os.setxattr = self._saved["getxattr"], self._saved["setxattr"]
        os.listxattr = self._saved["listxattr"]

    def __enter__(self):
        return self.install()

    def __exit__(self, *exc):
        self.uninstall()


class Checks:
    """Prints one TAP-like line per check; failed() counts the failures."""

    def __init__(self, prefix="sidecar: "):
        self.prefix, self.failures = prefix, 0

    def ok(self, name):
        print(f"ok - {self.prefix}{name}", flush=True)

    def fail(self, name, why):
        self.failures += 1
        why = str(why).replace("\n", " | ")[:600]
        print(f"not ok - {self.prefix}{name}: {why}", flush=True)

    def eq(self, name, expected, actual):
        if expected == actual:
            self.ok(name)
        else:
            self.fail(name, f"expected {expected!r}, got {actual!r}")

    def true(self, name, cond, why="condition false"):
        if cond:
            self.ok(name)
        else:
            self.fail(name, why)

    def run(self, name, fn):
        """Runs fn(); an exception is a failure of check name."""
        try:
            fn()
        except Exception as e:  # noqa: BLE001 - any error is a failed check
            self.fail(name, f"{type(e).__name__}: {e} :: {traceback.format_exc(limit=3)}")


if __name__ == "__main__":
    # sidecar_client.py SOCK METHOD PATH [BODY]: one request; prints "STATUS ERROR-NAME" and
    # then the body on a second line (for shell tests).
    import sys
    sock, method, path = sys.argv[1:4]
    body = sys.argv[4].encode() if len(sys.argv) > 4 else None
    try:
        st, _, data = request(sock, method, path, body=body)
    except OSError as e:
        print(f"000 {type(e).__name__}")
        sys.exit(0)
    try:
        name = json.loads(data).get("error", "-") if data else "-"
    except (ValueError, AttributeError):
        name = "-"
    try:
        print(f"{st} {name}", flush=True)
        sys.stdout.buffer.write(data + b"\n")
    except BrokenPipeError:  # the caller wanted the status line only
        pass
