"""The data folder (``$TUNING_ADVISOR_HOME``, default ``~/.tuning-advisor``): where it is, that it is
this user's only, and that it can be written before a run starts. Files only: no SQLite here."""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path

from estimators.errors import InputError

HOME_ENV = "TUNING_ADVISOR_HOME"


def home_path() -> Path:
    """The data folder as an absolute path, ``~`` expanded: a relative ``TUNING_ADVISOR_HOME`` means the
    folder seen from where the command started, not from the runner's working directory."""
    raw = os.environ.get(HOME_ENV)
    return Path(os.path.abspath(os.path.expanduser(raw))) if raw else Path.home() / ".tuning-advisor"


def pin_home() -> Path:
    """Writes the absolute home back into the environment, so every process started from here (the
    runner, its ranks) uses the same folder whatever its working directory. Called at start-up."""
    path = home_path()
    if os.environ.get(HOME_ENV):
        os.environ[HOME_ENV] = str(path)
    return path


_PRIVATE_CHECKED: set[str] = set()


OURS = ("runs.db", "runs", "uploads", "configs", "specs", "cpu_peak.json", "sample-brand-voice.jsonl")
"""What we keep in the home: only these (and ``runs.db-*`` files) are made private, so a home set to a
folder that holds other things (``TUNING_ADVISOR_HOME=~``) has nothing else of the user's changed."""


def _private(name: str, mode: int, uid: int) -> None:
    try:
        st = os.lstat(name)
        if st.st_uid == uid and not stat.S_ISLNK(st.st_mode) and stat.S_IMODE(st.st_mode) & 0o077:
            os.chmod(name, stat.S_IMODE(st.st_mode) & 0o700 | mode)
    except OSError:
        pass


def make_private(path: Path) -> None:
    """The home and what we keep in it: folders 0700, files 0600 (runs hold plans, data paths and
    errors). Done once per process per home, also for a folder that existed before with wider modes;
    files of another owner, links, and anything not ours (``OURS``) are left alone."""
    key = str(path)
    if key in _PRIVATE_CHECKED:
        return
    _PRIVATE_CHECKED.add(key)
    uid = os.getuid()
    try:
        names = os.listdir(path)
    except OSError:
        return
    entries = [e for e in names if e in OURS or e.startswith("runs.db")]
    if all(e in entries or e.startswith(".probe-") or e.endswith(".part") for e in names):
        _private(str(path), 0o700, uid)  # a folder of ours only (or a new one); not a home of other things
    for entry in entries:
        top = os.path.join(path, entry)
        if not os.path.isdir(top) or os.path.islink(top):
            _private(top, 0o600, uid)
            continue
        for root, _, files in os.walk(top):
            _private(root, 0o700, uid)
            for f in files:
                _private(os.path.join(root, f), 0o600, uid)


def home() -> Path:
    """The data folder, created if needed; this user's only (0700), whatever it was before."""
    path = home_path()
    path.mkdir(mode=0o700, parents=True, exist_ok=True)  # runs hold users' data and plans: theirs only
    make_private(path)
    return path


def check_home() -> Path:
    """The home, proven writable before anything runs: a StoreError with the fix when it is not (a
    file in its path, no permission, a read-only or full disk, a name too long)."""
    path = home_path()
    try:
        home()
        probe = path / f".probe-{os.getpid()}"
        write_private(probe, b"x" * 4096)
        probe.unlink()
        (path / "runs").mkdir(mode=0o700, exist_ok=True)
    except OSError as exc:
        raise StoreError(home_problem(path, exc)) from None
    return path


def home_problem(path: Path, exc: OSError) -> str:
    other = f"or set {HOME_ENV} to a writable folder"
    why = {errno.ENOSPC: f"the disk is full: free space on it, {other}",
           errno.EDQUOT: f"the disk quota is used up: free space, {other}",
           errno.EROFS: f"it is on a read-only file system: set {HOME_ENV} to a folder on a writable disk",
           errno.EACCES: f"permission denied: give yourself write access (chmod u+rwx), {other}",
           errno.EPERM: f"permission denied: give yourself write access (chmod u+rwx), {other}",
           errno.ENOTDIR: f"a file stands where a folder of its path should be: move that file, {other}",
           errno.EEXIST: f"a file stands where the folder should be: move that file, {other}",
           errno.ENAMETOOLONG: f"the path is too long for this file system (a name over 255 characters): set "
                               f"{HOME_ENV} to a shorter path"}.get(exc.errno, f"{exc.strerror or exc}: fix it, {other}")
    shown = str(path) if len(str(path)) <= 80 else str(path)[:60] + "…"
    return f"the data folder {shown} cannot be used: {why}"


def disk_full(path: Path) -> bool:
    """Whether the file system holding ``path`` (or its nearest existing parent) has under 1 MiB free."""
    import shutil

    for p in (path, *path.parents):
        if p.exists():
            try:
                return shutil.disk_usage(p).free < 1024**2
            except OSError:
                return False
    return False


def private_dir(path: Path) -> Path:
    """A folder (and its missing parents) only this user can enter (0700), whatever the umask."""
    path = Path(path)
    if not path.is_dir():
        private_dir(path.parent)
        path.mkdir(mode=0o700, exist_ok=True)
        os.chmod(path, 0o700)  # mkdir's mode is masked by the umask
    return path


def uploads() -> Path:
    """The folder of uploaded data files: this user's only (0700)."""
    return private_dir(home() / "uploads")


def write_private(path: Path, data: bytes | str) -> None:
    """Writes a file only this user can read (0600), whatever the umask; whole or not at all (written
    beside it, then renamed: a full disk never leaves half a file under the name). Every file the
    app and the CLI write under the home goes through here (the runner runs with umask 077)."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode()
    part = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(part, path)
    except BaseException:
        try:
            os.unlink(part)
        except OSError:
            pass
        raise


class StoreError(InputError):
    """The run history cannot be written (or read) right now: full, locked, read-only or an I/O error.
    The file is kept as it is; the message says what to do. (Corruption is not this: a corrupt file is
    moved aside.)"""


