"""A message sequence counter that survives reboots with few flash writes.

The counter reserves numbers in blocks: the file holds the first number not yet
handed out by any previous boot's reservation. On boot the counter starts there,
so `seq` never repeats, at the cost of a gap of at most `block` after a reset.
One small file write per `block` messages. A missing or corrupt file restarts
at the highest value we can trust (0 if none), and says so in the log.
"""

from flashfile import recover, replace
from log import log


class SeqCounter:
    def __init__(self, path: str, block: int = 100) -> None:
        self.path = path
        self.block = block
        self.next = self._load()
        self.reserved = self.next
        self._reserve()

    def _load(self) -> int:
        recover(self.path)
        try:
            with open(self.path) as f:
                text = f.read().strip()
            value = int(text)
            if value < 0:
                raise ValueError("negative")
            return value
        except OSError:
            return 0
        except ValueError as exc:
            log("seq_file_corrupt", path=self.path, reason=repr(exc))
            return 0

    def _reserve(self) -> None:
        self.reserved = self.next + self.block
        tmp = self.path + ".tmp"
        try:
            with open(tmp, "w") as f:
                f.write(str(self.reserved))
            replace(tmp, self.path)
        except OSError as exc:
            log("seq_save_failed", reason=repr(exc))

    def take(self) -> int:
        value = self.next
        self.next += 1
        if self.next >= self.reserved:
            self._reserve()
        return value
