"""Progress of a long counted job on stderr: a tqdm bar (count, rate, ETA) when stderr is a
terminal; otherwise a plain line at every tenth of the job (for logs, or to a `write` callable);
nothing when quiet."""

from __future__ import annotations

import sys
import time


class Progress:
    """    with Progress(total, "sampling", unit="img", quiet=args.quiet) as bar:
               bar.update(n)          # n more done
    """

    def __init__(self, total: int, desc: str, unit: str = "img", quiet: bool = False, stream=None, write=None):
        self.total, self.desc, self.unit, self.done = int(total), desc, unit, 0
        self.stream = stream or sys.stderr
        self.write = write or (lambda line: print(line, file=self.stream, flush=True))
        self.quiet = quiet
        self.bar = None
        self.t0 = time.perf_counter()
        self.next_line = max(1, self.total // 10)
        if not quiet and write is None and _is_terminal(self.stream):
            from tqdm import tqdm
            self.bar = tqdm(total=self.total, desc=desc, unit=unit, file=self.stream,
                            dynamic_ncols=True, smoothing=0.1)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.update(n)
        elif not self.quiet and (self.done >= self.next_line or self.done == self.total):
            rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
            eta = (self.total - self.done) / max(rate, 1e-9)
            self.write(f"{self.desc}: {self.done:,}/{self.total:,} {self.unit}  {rate:,.1f} {self.unit}/s  "
                       f"eta {_clock(eta)}")
            self.next_line = self.done + max(1, self.total // 10)

    def update_to(self, done: int) -> None:
        self.update(done - self.done)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> bool:
        self.close()
        return False


def _is_terminal(stream) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def _clock(seconds: float) -> str:
    seconds = int(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
