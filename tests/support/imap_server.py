"""A real IMAP server on loopback for the tests: Debian's dovecot, started and stopped here.

`make test` installs `dovecot-imapd`; without `/usr/sbin/dovecot` the tests that need it are
skipped with the install command. The server runs with its own minimal configuration in a
temporary directory: one user from a passwd-file, maildir storage, plain IMAP (no TLS) on a
free 127.0.0.1 port, nothing shared with a system dovecot. Messages are put in with the IMAP
APPEND command, as a mail server delivering them would leave them.
"""

from __future__ import annotations

import grp
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from imapclient import IMAPClient  # type: ignore[import-untyped]

__all__ = ["DOVECOT", "ImapServer", "dovecot_server"]

DOVECOT = Path("/usr/sbin/dovecot")
USER = "replies@vectorly.example"
PASSWORD = "s3cret-imap-pass"


@dataclass(frozen=True)
class ImapServer:
    host: str
    port: int
    username: str
    password: str
    root: Path

    def append(self, raw: bytes | str, folder: str = "INBOX") -> None:
        """Deliver one message into `folder` with IMAP APPEND."""
        data = raw.encode() if isinstance(raw, str) else raw
        with IMAPClient(self.host, port=self.port, ssl=False, timeout=10) as c:
            c.login(self.username, self.password)
            if not c.folder_exists(folder):
                c.create_folder(folder)
            c.append(folder, data)

    def count(self, folder: str = "INBOX") -> int:
        with IMAPClient(self.host, port=self.port, ssl=False, timeout=10) as c:
            c.login(self.username, self.password)
            return int(c.select_folder(folder, readonly=True)[b"EXISTS"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(root: Path, port: int, mail_user: str, login_user: str) -> str:
    group = grp.getgrgid(pwd.getpwnam(mail_user).pw_gid).gr_name
    return f"""
protocols = imap
listen = 127.0.0.1
base_dir = {root}/run
state_dir = {root}/state
log_path = {root}/dovecot.log
info_log_path = {root}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
default_internal_user = {mail_user}
default_internal_group = {group}
default_login_user = {login_user}
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{root}/mail/%u
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = uid={mail_user} gid={group} home={root}/home/%u
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {port}
  }}
  inet_listener imaps {{
    port = 0
  }}
}}
service stats {{
  unix_listener stats-reader {{
    user = {mail_user}
  }}
  unix_listener stats-writer {{
    user = {mail_user}
  }}
}}
"""


def _wait_for(port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"dovecot exited: {log.read_text() if log.exists() else ''}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as s:
                if s.recv(100).startswith(b"* OK"):
                    return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("dovecot did not answer on its port within 20 s")


@contextmanager
def dovecot_server() -> Iterator[ImapServer]:
    """Start dovecot on a free loopback port with one user; stop it and delete its files."""
    root = Path(tempfile.mkdtemp(prefix="gtm-dovecot-"))
    root.chmod(0o755)  # the mail processes run as an unprivileged user when we are root
    as_root = os.geteuid() == 0
    me = pwd.getpwuid(os.geteuid()).pw_name
    mail_user = "dovecot" if as_root else me
    login_user = "dovenull" if as_root else me
    entry = pwd.getpwnam(mail_user)
    for d in ("run", "state", "mail", "home"):
        (root / d).mkdir()
    for d in ("mail", "home"):
        os.chown(root / d, entry.pw_uid, entry.pw_gid)
    (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
    port = _free_port()
    conf = root / "dovecot.conf"
    conf.write_text(_config(root, port, mail_user, login_user))
    proc = subprocess.Popen(
        [str(DOVECOT), "-F", "-c", str(conf)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    try:
        _wait_for(port, proc, root / "dovecot.log")
        yield ImapServer("127.0.0.1", port, USER, PASSWORD, root)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if proc.stderr:
            proc.stderr.close()
        shutil.rmtree(root, ignore_errors=True)
