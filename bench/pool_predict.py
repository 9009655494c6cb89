"""The plain parallel script: the pandas baseline spread over ``multiprocessing.Pool(N)``.

Usage: python bench/pool_predict.py MODEL.joblib INPUT.csv OUTPUT.csv N

The file is cut into N byte ranges at line ends (the bench data has no quoted newlines); each
pool process reads its range with pandas, loads the model, calls ``predict_proba`` and writes its
part with ``to_csv``; the parent then appends the parts into the output. What a Python user
would write to use N cores without any tool. Prints the rows written.
"""

from __future__ import annotations

import io
import itertools
import os
import shutil
import sys
from multiprocessing import Pool


def ranges(path: str, parts: int) -> tuple[bytes, list[tuple[int, int]]]:
    """The header and ``parts`` byte ranges of whole lines after it."""
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        header = f.readline()
        cuts = [len(header)]
        for i in range(1, parts):
            f.seek(len(header) + (size - len(header)) * i // parts)
            f.readline()  # to the next line start
            cuts.append(min(f.tell(), size))
    cuts.append(size)
    return header, list(itertools.pairwise(cuts))


def score_range(job: tuple[str, str, bytes, int, int, str, bool]) -> int:
    model_file, input_csv, header, start, end, part, with_header = job
    import joblib
    import pandas as pd
    from bare_predict import scores  # the baseline's own scoring, per range

    with open(input_csv, "rb") as f:
        f.seek(start)
        data = f.read(end - start)
    out = scores(joblib.load(model_file), pd.read_csv(io.BytesIO(header + data)))
    out.to_csv(part, index=False, header=with_header)
    return len(out)


def main(argv: list[str]) -> int:
    if len(argv) != 4:
        print(__doc__, file=sys.stderr)
        return 2
    model_file, input_csv, output_csv, workers = argv[0], argv[1], argv[2], int(argv[3])
    header, spans = ranges(input_csv, workers)
    parts = [f"{output_csv}.part{i}" for i in range(len(spans))]
    jobs = [(model_file, input_csv, header, a, b, p, i == 0)
            for i, ((a, b), p) in enumerate(zip(spans, parts, strict=True))]
    with Pool(workers) as pool:
        rows = sum(pool.map(score_range, jobs))
    with open(output_csv, "wb") as out:
        for part in parts:
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out, 1 << 20)
            os.unlink(part)
    print(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
