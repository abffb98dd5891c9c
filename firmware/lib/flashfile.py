"""Atomic file replacement on the board's filesystem (LittleFS or FAT).

`replace(tmp, path)` renames a fully written temp file over `path`. LittleFS
replaces atomically; FAT refuses to rename onto an existing file, so the old
file is removed first (a power cut in that instant leaves the temp file, which
`recover()` adopts on the next boot).
"""

import os


def replace(tmp: str, path: str) -> None:
    try:
        os.rename(tmp, path)
    except OSError:
        try:
            os.remove(path)
        except OSError:
            pass
        os.rename(tmp, path)


def recover(path: str) -> None:
    """If only `<path>.tmp` survived a power cut, make it the file again."""
    try:
        os.stat(path)
        return
    except OSError:
        pass
    try:
        os.rename(path + ".tmp", path)
    except OSError:
        pass
