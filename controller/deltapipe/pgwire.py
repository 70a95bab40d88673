"""A small PostgreSQL client for the few quick statements of a command that must start fast.

Importing psycopg costs ~0.15 s (its C extension, libpq, asyncio, its error classes), more than all the
work of `deltapipe load` on an unchanged file. This speaks the frontend/backend protocol (version 3)
itself, with the standard library only, for plain simple queries whose results are read as text.

It handles only the common cases and says so by returning None, never by guessing: a TCP or Unix
socket connection to one host; sslmode disable, allow (plain) or prefer (TLS when the server offers it,
the certificate not verified, as libpq does; sslmode require and above, or a Kerberos ticket cache,
make it step aside so that libpq negotiates as it would); trust, password, md5 or SCRAM-SHA-256
(without channel binding) authentication with the password of the DSN or PGPASSWORD. Whatever else (a service
file, .pgpass, several hosts, a refused login...) is left to psycopg: the caller then takes its
ordinary path, which reports errors as usual.
"""

from __future__ import annotations

import hashlib
import os
import socket
import struct

# connection parameters understood here; any other makes connect() return None
_KNOWN = {"host", "port", "user", "password", "dbname", "sslmode", "connect_timeout", "application_name",
          "gssencmode", "target_session_attrs"}
_ENV = {"host": "PGHOST", "port": "PGPORT", "user": "PGUSER", "password": "PGPASSWORD", "dbname": "PGDATABASE",
        "sslmode": "PGSSLMODE", "connect_timeout": "PGCONNECT_TIMEOUT", "gssencmode": "PGGSSENCMODE",
        "target_session_attrs": "PGTARGETSESSIONATTRS"}


class Unsupported(Exception):
    """Something this client does not do: use psycopg instead."""


class ServerError(Exception):
    """An ErrorResponse: (sqlstate, message)."""

    def __init__(self, fields: dict):
        super().__init__(fields.get("M", "error"))
        self.sqlstate = fields.get("C")


def parse_dsn(dsn: str) -> dict:
    """Connection parameters of a postgresql:// URI or a key=value string (libpq's two forms)."""
    params: dict = {}
    if dsn.startswith(("postgresql://", "postgres://")):
        from urllib.parse import parse_qsl, unquote, urlsplit
        u = urlsplit(dsn)
        netloc = u.netloc
        if "@" in netloc:
            cred, netloc = netloc.rsplit("@", 1)
            user, _, pw = cred.partition(":")
            if user:
                params["user"] = unquote(user)
            if pw:
                params["password"] = unquote(pw)
        if "," in netloc:
            raise Unsupported("several hosts")
        if netloc.startswith("["):
            host, _, rest = netloc[1:].partition("]")
            port = rest[1:] if rest.startswith(":") else ""
        else:
            host, _, port = netloc.partition(":")
        if host:
            params["host"] = unquote(host)
        if port:
            params["port"] = port
        if u.path and u.path != "/":
            params["dbname"] = unquote(u.path[1:])
        for k, v in parse_qsl(u.query, keep_blank_values=True):
            params[k] = v
    else:
        s, i = dsn.strip(), 0
        while i < len(s):
            eq = s.index("=", i)
            key = s[i:eq].strip()
            i = eq + 1
            while i < len(s) and s[i] == " ":
                i += 1
            if i < len(s) and s[i] == "'":
                val, i = [], i + 1
                while s[i] != "'":
                    if s[i] == "\\":
                        i += 1
                    val.append(s[i])
                    i += 1
                i += 1
                value = "".join(val)
            else:
                j = i
                while j < len(s) and s[j] != " ":
                    j += 1
                value, i = s[i:j].replace("\\", ""), j
            params[key] = value
            while i < len(s) and s[i] == " ":
                i += 1
    return params


def _settings(dsn: str) -> dict:
    p = parse_dsn(dsn)
    unknown = set(p) - _KNOWN
    if unknown:
        raise Unsupported("parameters %s" % sorted(unknown))
    for k, env in _ENV.items():
        if k not in p and os.environ.get(env):
            p[k] = os.environ[env]
    if any(os.environ.get(v) for v in ("PGSERVICE", "PGHOSTADDR", "PGOPTIONS", "PGSSLCERT", "PGREQUIRESSL")):
        raise Unsupported("environment")
    if p.get("sslmode", "prefer") not in ("disable", "allow", "prefer"):
        raise Unsupported("sslmode")
    if p.get("target_session_attrs", "any") != "any":
        raise Unsupported("target_session_attrs")
    if p.get("gssencmode", "prefer") != "disable" and (
            os.environ.get("KRB5CCNAME") or os.path.exists("/tmp/krb5cc_%d" % os.getuid())):
        raise Unsupported("kerberos")  # libpq would try GSS encryption first
    if not p.get("host") or "," in p["host"]:
        raise Unsupported("host")
    if "user" not in p:
        import getpass
        p["user"] = getpass.getuser()
    p.setdefault("dbname", p["user"])
    return p


class Connection:
    """One session: simple queries, results as lists of text (or None) values."""

    def __init__(self, sock: socket.socket):
        self.sock = sock
        self.buf = b""
        self.params: dict = {}

    # -- framing
    def _send(self, kind: bytes, payload: bytes) -> None:
        self.sock.sendall(kind + struct.pack("!i", len(payload) + 4) + payload)

    def _recv(self, n: int) -> bytes:
        while len(self.buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise Unsupported("connection closed")
            self.buf += chunk
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    def _message(self) -> tuple[bytes, bytes]:
        head = self._recv(5)
        kind, length = head[:1], struct.unpack("!i", head[1:])[0]
        return kind, self._recv(length - 4)

    @staticmethod
    def _fields(body: bytes) -> dict:
        return {f[:1].decode(): f[1:].decode("utf-8", "replace") for f in body.split(b"\0") if f}

    # -- startup
    def _startup(self, p: dict) -> None:
        args = [("user", p["user"]), ("database", p["dbname"]), ("client_encoding", "UTF8"),
                ("application_name", p.get("application_name", "deltapipe"))]
        body = struct.pack("!i", 196608) + b"".join(k.encode() + b"\0" + v.encode() + b"\0" for k, v in args) + b"\0"
        self.sock.sendall(struct.pack("!i", len(body) + 4) + body)
        password = p.get("password")
        scram = None
        while True:
            kind, body = self._message()
            if kind == b"R":
                code = struct.unpack("!i", body[:4])[0]
                if code == 0:
                    continue
                if password is None:
                    raise Unsupported("a password is asked and none was given here")
                if code == 3:
                    self._send(b"p", password.encode() + b"\0")
                elif code == 5:
                    inner = hashlib.md5(password.encode() + p["user"].encode()).hexdigest().encode()
                    self._send(b"p", b"md5" + hashlib.md5(inner + body[4:8]).hexdigest().encode() + b"\0")
                elif code == 10:
                    if b"SCRAM-SHA-256\0" not in body[4:]:
                        raise Unsupported("SASL mechanisms")
                    scram = _Scram(password)
                    first = scram.first()
                    self._send(b"p", b"SCRAM-SHA-256\0" + struct.pack("!i", len(first)) + first)
                elif code == 11 and scram:
                    self._send(b"p", scram.final(body[4:]))
                elif code == 12 and scram:
                    scram.verify(body[4:])
                else:
                    raise Unsupported("authentication method %d" % code)
            elif kind == b"S":
                k, v, _ = body.split(b"\0", 2)
                self.params[k.decode()] = v.decode()
            elif kind == b"E":
                raise Unsupported("refused: %s" % self._fields(body).get("M"))  # psycopg will say it properly
            elif kind == b"Z":
                if self.params.get("standard_conforming_strings") != "on":
                    raise Unsupported("standard_conforming_strings off")
                return
            # K (backend key), N (notice), v (protocol version): nothing to do

    # -- queries
    def query(self, sql: str) -> list[list]:
        """Run ``sql`` (simple query protocol); the rows of its last result set, values as text or None."""
        self._send(b"Q", sql.encode() + b"\0")
        rows: list[list] = []
        error = None
        while True:
            kind, body = self._message()
            if kind == b"T":
                rows = []
            elif kind == b"D":
                n = struct.unpack("!h", body[:2])[0]
                pos, row = 2, []
                for _ in range(n):
                    ln = struct.unpack("!i", body[pos:pos + 4])[0]
                    pos += 4
                    if ln < 0:
                        row.append(None)
                    else:
                        row.append(body[pos:pos + ln].decode())
                        pos += ln
                rows.append(row)
            elif kind == b"E":
                error = ServerError(self._fields(body))
            elif kind == b"Z":
                if error:
                    raise error
                return rows

    def close(self) -> None:
        try:
            self._send(b"X", b"")
        except OSError:
            pass
        self.sock.close()


def literal(value) -> str:
    """A SQL literal (the session has standard_conforming_strings on)."""
    if value is None:
        return "NULL"
    s = str(value)
    if "\0" in s:
        raise Unsupported("NUL in a literal")
    return "'" + s.replace("'", "''") + "'"


class _Scram:
    """SCRAM-SHA-256 (RFC 5802, 7677) without channel binding, as libpq does without TLS."""

    def __init__(self, password: str):
        import base64
        import hmac
        self.b64, self.hmac = base64, hmac
        self.password = password.encode()
        self.nonce = base64.b64encode(os.urandom(18)).decode()
        self.bare = "n=,r=" + self.nonce

    def first(self) -> bytes:
        return ("n,," + self.bare).encode()

    def final(self, server_first: bytes) -> bytes:
        attrs = dict(kv.split("=", 1) for kv in server_first.decode().split(","))
        if not attrs["r"].startswith(self.nonce):
            raise Unsupported("SCRAM nonce")
        salted = hashlib.pbkdf2_hmac("sha256", self.password, self.b64.b64decode(attrs["s"]), int(attrs["i"]))
        client_key = self.hmac.new(salted, b"Client Key", "sha256").digest()
        without_proof = "c=biws,r=" + attrs["r"]
        auth = ",".join((self.bare, server_first.decode(), without_proof)).encode()
        sig = self.hmac.new(hashlib.sha256(client_key).digest(), auth, "sha256").digest()
        proof = bytes(a ^ b for a, b in zip(client_key, sig))
        self.server_sig = self.hmac.new(self.hmac.new(salted, b"Server Key", "sha256").digest(), auth, "sha256").digest()
        return (without_proof + ",p=" + self.b64.b64encode(proof).decode()).encode()

    def verify(self, server_final: bytes) -> None:
        attrs = dict(kv.split("=", 1) for kv in server_final.decode().split(","))
        if self.b64.b64decode(attrs.get("v", "")) != self.server_sig:
            raise Unsupported("the server's SCRAM signature does not match")


def connect(dsn: str, application_name: str = "deltapipe") -> Connection | None:
    """A session on ``dsn``, or None when this client cannot open it the way libpq would."""
    sock = None
    try:
        p = _settings(dsn)
        p.setdefault("application_name", application_name)
        timeout = float(p.get("connect_timeout") or 10) or None
        host, port = p["host"], int(p.get("port") or 5432)
        if host.startswith("/"):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.settimeout(timeout)
            sock.connect(os.path.join(host, ".s.PGSQL.%d" % port))
        else:
            sock = socket.create_connection((host, port), timeout=timeout)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            if p.get("sslmode", "prefer") == "prefer":
                sock.sendall(struct.pack("!ii", 8, 80877103))  # SSLRequest
                answer = sock.recv(1)
                if answer == b"S":
                    # as libpq's sslmode=prefer: encrypted, the certificate not verified
                    import ssl
                    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
                    ctx.check_hostname = False
                    ctx.verify_mode = ssl.CERT_NONE
                    sock = ctx.wrap_socket(sock)
                elif answer != b"N":
                    raise Unsupported("unexpected answer to SSLRequest")
        sock.settimeout(None)
        c = Connection(sock)
        c._startup(p)
        return c
    except (Unsupported, OSError, ValueError, KeyError, IndexError, struct.error):
        if sock is not None:
            sock.close()
        return None


__all__ = ["connect", "literal", "parse_dsn", "Connection", "ServerError", "Unsupported"]
