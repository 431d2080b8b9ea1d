"""Evaluate a model's titles against the real ones on a fixed, seeded sample of abstracts.

Each abstract gets N candidates from the real generator (so evaluation measures what the researcher
sees), written to ``samples.jsonl`` as soon as it is done: an interrupted run resumes where it stopped.
Metrics are then computed from the samples (core.metrics) for every requested ranking, so one
generation pass scores both score and consensus ranking. Outputs: samples.jsonl, metrics.json,
report.md and run.json (the settings a resumed run must share).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import time
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from statistics import fmean

import numpy as np

from core.errors import TitlecraftError, TitlecraftWarning
from core.paths import refuse_file_in_the_way, write_text_atomically

MODES = ("zero-shot", "few-shot", "finetuned")
RANKING_CHOICES = {"score": ("score",), "consensus": ("consensus",), "both": ("score", "consensus")}
DEFAULT_RETRIEVAL_POOL = "data/prepared/train.parquet"
# EvalConfig fields that override the generator's SamplingParams of the same name when given.
SAMPLING_OVERRIDES = ("temperature", "top_p", "max_new_tokens", "greedy_first", "oversample", "diversity")
SAMPLES_FILE = "samples.jsonl"
METRICS_FILE = "metrics.json"
REPORT_FILE = "report.md"
RUN_FILE = "run.json"
REPORT_EXAMPLES = 10


@dataclass(frozen=True)
class EvalConfig:
    """One evaluation's settings; sampling values left as None take the generator's defaults."""

    model: str
    data: str
    mode: str = "zero-shot"
    limit: int = 500
    n: int = 5
    seed: int = 0
    k: int = 4
    retrieval_pool: str = DEFAULT_RETRIEVAL_POOL
    ranking: str = "score"
    temperature: float | None = None
    top_p: float | None = None
    max_new_tokens: int | None = None
    greedy_first: bool | None = None
    oversample: int | None = None
    diversity: float | None = None

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise TitlecraftError(f"unknown mode {self.mode!r}; expected one of {', '.join(MODES)}")
        if self.ranking not in RANKING_CHOICES:
            raise TitlecraftError(f"unknown ranking {self.ranking!r}; expected one of {', '.join(RANKING_CHOICES)}")
        if self.limit < 1:
            raise TitlecraftError("--limit must be at least 1")
        if self.mode == "few-shot" and self.k < 1:
            raise TitlecraftError("few-shot evaluation needs --k of at least 1")
        from core.sampling import SEED_BITS

        if not 0 <= self.seed < 2**SEED_BITS:  # numpy's shuffle raised a traceback for a negative seed
            raise TitlecraftError(f"--seed must be a whole number from 0 to 2**{SEED_BITS} - 1")
        self.sampling()  # bad sampling overrides are refused here, before a report folder is created
        if self.temperature == 0 and self.n > 1:  # the report would describe N candidates that were never drawn
            raise TitlecraftError("--temperature 0 decodes one candidate per abstract: use -n 1 with it")

    @property
    def rankings(self) -> tuple[str, ...]:
        return RANKING_CHOICES[self.ranking]

    @property
    def examples_per_prompt(self) -> int:
        return self.k if self.mode == "few-shot" else 0

    def sampling(self):
        """The generator's SamplingParams with this run's overrides (seed is set per abstract)."""
        from core.generate import SamplingParams

        given = {name: getattr(self, name) for name in SAMPLING_OVERRIDES}
        return SamplingParams(
            n=self.n, ranking=self.rankings[0], **{name: value for name, value in given.items() if value is not None}
        )

    def identity(self) -> dict:
        """What must match for samples to be reused: everything but the limit (a larger limit with the
        same seed extends the same shuffled order)."""
        return {
            "model": model_identity(self.model),
            "generation_ranking": self.rankings[0],  # which candidates are kept depends on it
            "data": str(Path(self.data).resolve()),
            "mode": self.mode,
            "n": self.n,
            "seed": self.seed,
            "k": self.examples_per_prompt,
            "retrieval_pool": str(Path(self.retrieval_pool).resolve()) if self.examples_per_prompt else None,
            **self.sampling_settings(),
        }

    def sampling_settings(self) -> dict:
        """The overridable sampling settings as the generator will use them (defaults filled in)."""
        sampling = self.sampling()
        return {name: getattr(sampling, name) for name in SAMPLING_OVERRIDES}


def _recorded_mode(out_dir: Path) -> str | None:
    """The mode a report folder's run.json records, if it can be read (else the resume check says why)."""
    try:
        recorded = json.loads((out_dir / RUN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return recorded.get("mode") if isinstance(recorded, dict) else None


def default_mode(spec: str, out_dir: str | os.PathLike | None = None) -> str:
    """The mode a report is labelled with when --mode is not given: ``finetuned`` for ``embedded`` (with
    its shipped adapter) and for checkpoints titlecraft trained (they hold titlecraft.json), else
    ``zero-shot``. Both prompt alike; the label is what compare sets runs apart by. A report folder
    that already holds one of these two labels keeps it: labelled zero-shot before this default, it was
    refused as another run's when the same command resumed or re-scored it."""
    from core.models import CHECKPOINT_META, EMBEDDED, shipped_adapter_present

    recorded = _recorded_mode(Path(out_dir)) if out_dir is not None else None
    if recorded in ("zero-shot", "finetuned"):
        return recorded
    if spec == EMBEDDED:
        return "finetuned" if shipped_adapter_present() else "zero-shot"
    return "finetuned" if (Path(spec).expanduser() / CHECKPOINT_META).is_file() else "zero-shot"


def model_identity(spec: str) -> str:
    """A model spec as samples depend on it: a local checkpoint by its full path and a hash of its
    metadata (a retrained checkpoint in the same folder is another model); ``embedded`` by its adapter's."""
    from core.models import CHECKPOINT_META, EMBEDDED, SHIPPED_ADAPTER_DIR, file_sha256

    folder = SHIPPED_ADAPTER_DIR if spec == EMBEDDED else Path(spec).expanduser()
    if not folder.is_dir():
        return spec  # a hub id, or embedded-base
    name = spec if spec == EMBEDDED else str(folder.resolve())
    metadata = next((folder / f for f in (CHECKPOINT_META, "config.json") if (folder / f).is_file()), None)
    return f"{name}@{file_sha256(metadata)[:16]}" if metadata else name


def row_id(arxiv_id, abstract: str) -> str:
    """A stable id for an evaluated abstract: its arXiv id, else a hash of its text."""
    if isinstance(arxiv_id, str) and arxiv_id:
        return arxiv_id
    return "sha256:" + hashlib.sha256(abstract.encode()).hexdigest()[:16]


def _has_text(value) -> bool:
    """A title or abstract to evaluate with: a string with more than whitespace (not a null cell)."""
    return isinstance(value, str) and bool(value.strip())


def select_rows(data: str | os.PathLike, limit: int, seed: int) -> list[dict]:
    """The first ``limit`` pairs after a seeded shuffle: every run with the same seed and data scores
    the same abstracts, and a smaller limit is a prefix of a larger one. Rows without a title or an
    abstract (they cannot be scored) and rows repeating an earlier row's id are left out with a warning
    before the shuffle."""
    from core.dataset import read_pairs

    frame = read_pairs(data)
    complete = frame["title"].map(_has_text) & frame["abstract"].map(_has_text)
    if not complete.all():
        warnings.warn(
            f"{(~complete).sum()} of {len(frame)} rows of {data} have no title or no abstract and are left out",
            TitlecraftWarning, stacklevel=2,
        )
        frame = frame[complete].reset_index(drop=True)
        if frame.empty:
            raise TitlecraftError(f"{data} has no row with both a title and an abstract to evaluate on")
    frame = frame.assign(id=[row_id(*row) for row in zip(frame["arxiv_id"], frame["abstract"], strict=True)])
    repeated = frame["id"].duplicated()
    if repeated.any():
        warnings.warn(
            f"{repeated.sum()} of {len(frame)} rows of {data} repeat the arXiv id or abstract of an earlier row "
            "and are left out (samples are kept by id: they would be scored with the earlier row's titles)",
            TitlecraftWarning, stacklevel=2,
        )
        frame = frame[~repeated].reset_index(drop=True)
    order = np.random.default_rng(seed).permutation(len(frame))[:limit]
    return [
        {"id": frame.at[i, "id"], "abstract": frame.at[i, "abstract"], "reference": frame.at[i, "title"]}
        for i in (int(position) for position in order)
    ]


def selection_digest(ids: Sequence[str]) -> str:
    """A short fingerprint of which abstracts were scored, so comparisons can check they match."""
    return hashlib.sha256("\n".join(ids).encode()).hexdigest()[:16]


def abstract_seed(seed: int, sample_id: str) -> int:
    """Each abstract's sampling seed depends only on the run seed and the abstract, not on the order
    it was reached in, so a resumed run samples what an uninterrupted one would have."""
    return int(hashlib.sha256(f"{seed}:{sample_id}".encode()).hexdigest()[:8], 16)


def read_samples(path: Path) -> dict[str, dict]:
    """Samples already written, by id. A torn last line (the run was killed mid-write) is dropped and
    the file replaced by one without it, so appending continues on a clean line (replaced, not
    rewritten in place: a kill during an in-place rewrite would lose every sample)."""
    if not path.is_file():
        return {}
    # Split on "\n" only: samples are written with raw U+2028 or U+0085 (ensure_ascii=False) in abstracts
    # and titles, which str.splitlines would cut in two, refusing or dropping a sample that is whole.
    lines = path.read_text(encoding="utf-8").removesuffix("\n").split("\n")
    if lines == [""]:
        return {}
    samples: dict[str, dict] = {}
    for number, line in enumerate(lines, start=1):
        try:
            sample = json.loads(line)
        except json.JSONDecodeError:
            if number < len(lines):
                raise TitlecraftError(f"{path} line {number} is not valid JSON; delete the file to start over") from None
            write_text_atomically(path, "".join(f"{kept}\n" for kept in lines[:-1]))
            break
        samples[sample["id"]] = sample
    return samples


def holds_samples(out_dir: Path) -> bool:
    """Whether a run has written any sample into out_dir."""
    path = out_dir / SAMPLES_FILE
    return path.is_file() and path.stat().st_size > 0


def check_resumable(out_dir: Path, config: EvalConfig) -> None:
    """Refuse to mix samples of a different run into this one; record this run's identity.

    Only samples are protected: a run that failed before its first sample (a mistyped retrieval pool
    or model) leaves just its run.json, and the corrected command may use the folder."""
    run_file = out_dir / RUN_FILE
    identity = config.identity()
    if run_file.is_file() and holds_samples(out_dir):
        previous = json.loads(run_file.read_text())
        changed = sorted(key for key in identity if previous.get(key) != identity[key])
        if changed:
            raise TitlecraftError(
                f"{out_dir} holds an evaluation with different settings ({', '.join(changed)}); "
                "choose another --out or delete that folder"
            )
    write_text_atomically(run_file, json.dumps(identity, indent=2) + "\n")  # torn, it would block the resume


def prepare_out_dir(out_dir: Path, config: EvalConfig) -> None:
    """Create the report folder and claim it for this run, or say plainly why it cannot be written."""
    if out_dir.exists() and not out_dir.is_dir():
        raise TitlecraftError(f"--out {out_dir} is a file; give a folder for the report")
    refuse_file_in_the_way(out_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        check_resumable(out_dir, config)
    except OSError as error:
        raise TitlecraftError(f"cannot write the report folder {out_dir}: {error.strerror or error}") from None


def candidate_record(candidate) -> dict:
    """A candidate as samples.jsonl keeps it; ``cut_off`` lets metrics flag it as the generator did."""
    return {
        "text": candidate.text,
        "score": candidate.score,
        "flags": candidate.flags,
        "rank": candidate.rank,
        "cut_off": candidate.cut_off,
    }


class SampleWriter:
    """Generates and appends one sample per abstract, with the retrieval examples its mode asks for."""

    def __init__(self, config: EvalConfig, generator, retriever, path: Path):
        self.config = config
        self.generator = generator
        self.retriever = retriever
        self.path = path
        self.params = config.sampling()

    def write(self, row: dict) -> dict:
        import torch

        from core.metrics import ranked_top

        examples = self.retriever.examples(row["abstract"], self.config.k) if self.retriever else []
        used = self.generator.build_prompt(row["abstract"], self.params.max_new_tokens, examples).examples_used
        params = replace(self.params, seed=abstract_seed(self.config.seed, row["id"]))
        result = self.generator.generate(row["abstract"], params, examples)
        sample = {
            **row,
            "candidates": [candidate_record(candidate) for candidate in result.candidates],
            "top1": result.candidates[0].text if result.candidates else "",
            "seconds": result.seconds,
            "model_name": result.model,
            "device": result.device,
            "dtype": self.generator.info.dtype,
            "threads": torch.get_num_threads(),
            "seed": params.seed,
            "examples": [title for _, title in examples[:used]],
            "notice": result.notice,
        }
        for ranking in self.config.rankings[1:]:
            top = ranked_top(sample, ranking)
            sample[f"top1_{ranking}"] = top.text if top else ""
        with self.path.open("a", encoding="utf-8") as handle:
            handle.write(json.dumps(sample, ensure_ascii=False) + "\n")
        return sample


def load_generator(spec: str, device: str):
    from core.generate import TitleGenerator
    from core.models import load_model

    return TitleGenerator(*load_model(spec, device=device))


def _require_same_dtype(done: dict[str, dict], dtype: str, out_dir: Path) -> None:
    """Refuse to add samples in another dtype than the saved ones: it changes the candidates, and the
    report names one dtype for all of them (the environment, not a setting, picks it)."""
    from core.models import DTYPE_ENV

    saved = sorted({sample["dtype"] for sample in done.values() if "dtype" in sample} - {dtype})
    if saved:
        raise TitlecraftError(
            f"{out_dir} holds samples generated in {', '.join(saved)}, and this run would generate in {dtype}; "
            f"resume it with {DTYPE_ENV}={saved[0]}, or choose another --out"
        )


def _require_same_rows(done: dict[str, dict], rows: Sequence[dict], data: str, out_dir: Path) -> None:
    """Refuse to resume over a data file whose rows changed under the same ids (prepared again, or
    edited): the report would score some abstracts against old references and others against new."""
    changed = [
        row["id"] for row in rows
        if row["id"] in done and (done[row["id"]]["abstract"], done[row["id"]]["reference"]) != (row["abstract"], row["reference"])
    ]
    if changed:
        raise TitlecraftError(
            f"{data} has changed since {out_dir} was generated: {len(changed)} of its abstracts or titles differ "
            f"(first: {changed[0]}); choose another --out, or delete that folder to start over"
        )


def generate_samples(
    config: EvalConfig, rows: Sequence[dict], out_dir: Path, generator=None, retriever=None,
    device: str = "auto", progress: bool = True,
) -> dict[str, dict]:
    """Samples for every row, generating only those not already in samples.jsonl."""
    from tqdm import tqdm

    path = out_dir / SAMPLES_FILE
    done = read_samples(path)
    _require_same_rows(done, rows, config.data, out_dir)
    todo = [row for row in rows if row["id"] not in done]
    if not todo:
        return done
    generator = generator or load_generator(config.model, device)
    _require_same_dtype(done, generator.info.dtype, out_dir)
    if config.examples_per_prompt and retriever is None:
        from core.retrieve import Retriever

        print(f"indexing the retrieval pool {config.retrieval_pool} …", flush=True)
        retriever = Retriever.from_file(config.retrieval_pool)
    writer = SampleWriter(config, generator, retriever if config.examples_per_prompt else None, path)
    # The bar's running mean covers the abstracts a resumed run already holds, as the metrics will.
    rouge_l = [top1_rouge_l(done[row["id"]], config.rankings[0]) for row in rows if row["id"] in done]
    with tqdm(total=len(rows), initial=len(rows) - len(todo), desc="evaluating", unit="abstract", disable=not progress) as bar:
        for row in todo:
            sample = writer.write(row)
            done[row["id"]] = sample
            rouge_l.append(top1_rouge_l(sample, config.rankings[0]))
            bar.set_postfix_str(f"top-1 ROUGE-L {fmean(rouge_l):.1f}, {sample['seconds']:.1f} s")
            bar.update()
    return done


def top1_rouge_l(sample: dict, ranking: str) -> float:
    """The top-1 ROUGE-L of one sample under ``ranking``, as the metrics score it."""
    from core.metrics import rouge

    return rouge(scored_top(sample, ranking), sample["reference"])["rougeL"]


def scored_top(sample: dict, ranking: str) -> str:
    """The candidate that the top-1 metrics score under ``ranking``: re-ranked from the stored candidates,
    as metrics are (consensus among the N kept, where the generator ranked its larger pool), so what the
    report and the progress bar show is what the metrics scored."""
    from core.metrics import ranked_top

    top = ranked_top(sample, ranking)
    return top.text if top else ""


def evaluate(
    config: EvalConfig, out_dir: str | os.PathLike, generator=None, retriever=None, device: str = "auto",
    progress: bool = True,
) -> dict:
    """Run (or resume) an evaluation and write samples.jsonl, metrics.json and report.md into out_dir."""
    from core.metrics import score_samples

    out_dir = Path(out_dir)
    rows = select_rows(config.data, config.limit, config.seed)
    prepare_out_dir(out_dir, config)
    done = generate_samples(config, rows, out_dir, generator, retriever, device, progress)
    samples = [done[row["id"]] for row in rows]
    metrics = {
        **score_samples(samples, config.n, config.rankings),
        **run_description(config, samples),
    }
    write_text_atomically(out_dir / METRICS_FILE, json.dumps(metrics, indent=2) + "\n")
    write_text_atomically(out_dir / REPORT_FILE, render_report(metrics, samples))
    return metrics


def run_description(config: EvalConfig, samples: Sequence[dict]) -> dict:
    """The settings recorded beside the metrics, so a number can always be traced to how it was made."""
    settings = asdict(config)
    settings.update(
        **config.sampling_settings(),
        k=config.examples_per_prompt,
        retrieval_pool=config.retrieval_pool if config.examples_per_prompt else None,
        rankings=list(config.rankings),
        abstracts=len(samples),
        selection=selection_digest([sample["id"] for sample in samples]),
        examples_used=fmean(len(sample["examples"]) for sample in samples),
        model_name=samples[-1]["model_name"],
        device=samples[-1]["device"],
        dtype=samples[-1].get("dtype", "not recorded"),
        threads=samples[-1]["threads"],
        created=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
    )
    return settings


# Characters that would end a table cell or turn text into emphasis, code, a link or HTML.
_MARKDOWN_SPECIAL = re.compile(r"([\\`*_\[\]<>~|])")


def markdown_cell(text: str) -> str:
    """Text shown literally in a markdown table cell (titles, run names): markup characters escaped,
    line breaks made spaces, never empty."""
    return _MARKDOWN_SPECIAL.sub(r"\\\1", " ".join(text.splitlines())) if text else "(none)"


METRIC_LABELS = {
    "top1.rouge1": "Top-1 ROUGE-1",
    "top1.rouge2": "Top-1 ROUGE-2",
    "top1.rougeL": "Top-1 ROUGE-L",
    "top1.bleu": "Top-1 BLEU (corpus)",
    "top1.sentence_bleu": "Top-1 BLEU (mean sentence)",
    "top1.length_ratio": "Top-1 length / reference (words)",
    "top1.usable_rate": "Top-1 usable %",
}
SET_LABELS = {
    # One pick per abstract, the candidate with the highest ROUGE-L: its other scores are not their own maxima.
    "best_of_n.rouge1": "Best of N ROUGE-L pick: its ROUGE-1",
    "best_of_n.rouge2": "Best of N ROUGE-L pick: its ROUGE-2",
    "best_of_n.rougeL": "Best of N ROUGE-L",
    "best_of_n.bleu": "Best of N ROUGE-L pick: its BLEU (corpus)",
    "usable_rate": "Usable candidates %",
    "copy_rate": "Copies of an abstract sentence %",
    "distinct2": "Distinct-2 within a set %",
    "distinct_candidates": "Distinct candidates (of N)",
    "full_set_rate": "Sets with N distinct %",
    "seconds_per_abstract": "Seconds per abstract",
}


def decoding_description(metrics: dict) -> str:
    """How candidates were decoded, as it happened: greedy decoding (temperature 0) decodes one
    candidate and samples no extras, whatever the oversample and top-p settings say."""
    if metrics["temperature"] == 0:
        return (
            f"greedy decoding (temperature 0), max new tokens {metrics['max_new_tokens']}: "
            "one candidate per abstract, none sampled."
        )
    return (
        f"temperature {metrics['temperature']}, top-p {metrics['top_p']}, max new tokens {metrics['max_new_tokens']}, "
        f"{metrics.get('oversample', 0)} extra candidates sampled and {metrics['n']} kept "
        f"(diversity weight {metrics.get('diversity', 0)})."
    )


def render_report(metrics: dict, samples: Sequence[dict]) -> str:
    """report.md: settings, the metrics per ranking, and the first few abstracts' titles."""
    rankings = metrics["rankings"]
    prefixes = [f"{r}." for r in rankings] if len(rankings) > 1 else [""]
    lines = [
        f"# Evaluation: {metrics['model']} ({metrics['mode']})",
        "",
        f"{metrics['n']} candidates for each of {metrics['abstracts']} abstracts of `{metrics['data']}` "
        f"(seeded shuffle, seed {metrics['seed']}, limit {metrics['limit']}, selection {metrics['selection']}).",
        f"Model: {metrics['model_name']} on {metrics['device']}, {metrics['dtype']} "
        f"(torch threads: {metrics['threads']}); {decoding_description(metrics)}",
    ]
    if metrics["k"]:
        lines.append(
            f"Few-shot: {metrics['k']} retrieved examples from `{metrics['retrieval_pool']}`, "
            f"{metrics['examples_used']:.2f} fitted the prompt on average."
        )
    lines += ["", "ROUGE and BLEU are F1 / BLEU scores in percent; rates are percentages.", ""]
    lines += ["| Top candidate | " + " | ".join(rankings) + " |", "|---|" + "---:|" * len(rankings)]
    for key, label in METRIC_LABELS.items():
        lines.append(f"| {label} | " + " | ".join(f"{metrics[prefix + key]:.2f}" for prefix in prefixes) + " |")
    lines += ["", "| Candidate set | value |", "|---|---:|"]
    lines += [f"| {label} | {metrics[key]:.2f} |" for key, label in SET_LABELS.items()]
    lines += ["", f"## First {min(REPORT_EXAMPLES, len(samples))} abstracts", "", "| Reference | Top candidate |", "|---|---|"]
    lines += [
        f"| {markdown_cell(s['reference'])} | {markdown_cell(scored_top(s, rankings[0]))} |" for s in samples[:REPORT_EXAMPLES]
    ]
    return "\n".join(lines) + "\n"
