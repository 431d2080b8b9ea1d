"""Harvest (abstract, title) pairs from arXiv's OAI-PMH interface into a pair parquet file.

arxivscraper builds the request (category validation, OAI set names, date range) and supplies the XML
namespaces; its ``scrape`` loop is not used because it lower-cases titles and abstracts, ignores the
server's Retry-After, shows no progress and cannot resume. This module pages through the same
ListRecords flow itself, reading the raw XML fields so that case survives, and saves every page in a
sidecar folder next to the output so that an interrupted harvest continues where it stopped.
"""

from __future__ import annotations

import email.utils
import http.client
import json
import os
import re
import shutil
import time
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, timezone
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import parse_qsl, urlencode, urlsplit
from urllib.request import urlopen

import pyarrow as pa
import pyarrow.parquet as pq
from arxivscraper import Scraper
from arxivscraper.constants import OAI, cats, subcats
from tqdm import tqdm

from core.dataset import PAIR_SCHEMA
from core.errors import TitlecraftError, TitlecraftWarning
from core.paths import refuse_file_in_the_way, write_text_atomically
from core.prompts import normalise_whitespace

DEFAULT_OAI_URL = "http://export.arxiv.org/oai2"
OAI_URL_ENV = "TITLECRAFT_OAI_URL"
# How often a busy server (503/429) is retried for one page before giving up.
MAX_BUSY_RETRIES = 5
# arxivscraper's own wait when a 503 carries no usable Retry-After.
DEFAULT_RETRY_AFTER_S = 30
REQUEST_TIMEOUT_S = 60.0
PARTIAL_SUFFIX = ".partial"
_SUBCATEGORY = re.compile(r"^[a-z][a-z-]*(\.[A-Za-z][A-Za-z-]*)?$")
# arXiv's category names by their lower-case spelling ("cs.ai" is cs.AI, "astro-ph.co" is astro-ph.CO):
# records name them exactly so, and no two differ only in case.
_CATEGORY_SPELLING = {name.lower(): name for name in (*cats, *(name for names in subcats.values() for name in names))}


def oai_url(base_url: str | None = None) -> str:
    """The OAI-PMH endpoint: the argument, else $TITLECRAFT_OAI_URL, else arXiv's own."""
    return (base_url or os.environ.get(OAI_URL_ENV) or DEFAULT_OAI_URL).rstrip("?")


class ExpiredResumptionToken(TitlecraftError):
    """The server no longer knows the resumption token (OAI-PMH ``badResumptionToken``; arXiv's expire
    after a while), so the list can only be requested again from its start."""


@dataclass(frozen=True)
class Page:
    """One ListRecords response: its pair rows, and where the list continues (None at its end)."""

    rows: list[dict]
    records: int
    resumption_token: str | None
    complete_list_size: int | None


def _local_name(element: ET.Element) -> str:
    return element.tag.rpartition("}")[2]


def _v1_date(version_dates: Iterable[str]) -> str | None:
    """The first submission date from arXivRaw's RFC 2822 version dates."""
    for text in version_dates:
        try:
            return email.utils.parsedate_to_datetime(text).date().isoformat()
        except (TypeError, ValueError):
            continue
    return None


def _record_row(record: ET.Element, source: str) -> dict | None:
    """A pair row from an ``arXiv`` or ``arXivRaw`` record; None for deleted or incomplete records."""
    header = record.find(OAI + "header")
    if header is not None and header.get("status") == "deleted":
        return None
    metadata = record.find(OAI + "metadata")
    if metadata is None or len(metadata) == 0:
        return None
    fields: dict[str, ET.Element] = {}
    version_dates: list[str] = []
    for child in metadata[0]:
        name = _local_name(child)
        fields.setdefault(name, child)
        if name == "version":
            version_dates += [part.text or "" for part in child if _local_name(part) == "date"]

    def text(name: str) -> str:
        element = fields.get(name)
        return normalise_whitespace("".join(element.itertext())) if element is not None else ""

    title, abstract, arxiv_id = text("title"), text("abstract"), text("id")
    if not (title and abstract and arxiv_id):
        return None
    return {
        "arxiv_id": arxiv_id,
        "title": title,
        "abstract": abstract,
        "categories": text("categories") or None,
        "date": text("created") or _v1_date(version_dates),
        "source": source,
    }


def parse_page(xml: bytes, source: str) -> Page:
    """Parse a ListRecords response (metadataPrefix ``arXiv`` or ``arXivRaw``) into pair rows."""
    try:
        root = ET.fromstring(xml)
    except ET.ParseError as error:
        raise TitlecraftError(f"the OAI-PMH server sent a page that is not valid XML ({error})") from None
    error = root.find(OAI + "error")
    if error is not None:
        if error.get("code") == "noRecordsMatch":
            return Page([], 0, None, 0)
        refused = f"the OAI-PMH server refused the request: {error.get('code')}: {error.text}"
        if error.get("code") == "badResumptionToken":
            raise ExpiredResumptionToken(refused)
        raise TitlecraftError(refused)
    list_records = root.find(OAI + "ListRecords")
    if list_records is None:
        raise TitlecraftError("the OAI-PMH server sent a page without ListRecords")
    records = list_records.findall(OAI + "record")
    rows = [row for row in (_record_row(record, source) for record in records) if row]
    token = list_records.find(OAI + "resumptionToken")
    if token is None:
        return Page(rows, len(records), None, None)
    size = token.get("completeListSize") or ""
    return Page(rows, len(records), (token.text or "").strip() or None, int(size) if size.isdigit() else None)


def retry_after_seconds(value: str | None) -> float:
    """Seconds to wait from a Retry-After header (delta-seconds or an HTTP date; a date without a zone,
    or with RFC 2822's unknown zone ``-0000``, is taken as UTC, as HTTP dates always are)."""
    if not value:
        return DEFAULT_RETRY_AFTER_S
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return DEFAULT_RETRY_AFTER_S
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


class ArxivHarvester(Scraper):
    """arxivscraper's Scraper, pointed at a configurable endpoint and fetching one page at a time."""

    def __init__(
        self,
        category: str,
        date_from: str | None = None,
        date_until: str | None = None,
        base_url: str | None = None,
    ):
        try:
            super().__init__(category, date_from=date_from, date_until=date_until)
        except ValueError as error:
            raise TitlecraftError(str(error)) from None
        self.base_url = oai_url(base_url)
        # arxivscraper's URL carries from/until/metadataPrefix/set; keep them, drop its fixed host.
        self.query = {k: v for k, v in parse_qsl(urlsplit(self.url).query) if k != "verb"}
        self.source = f"{self.base_url}?set={self.query.get('set', '')}"

    def page_url(self, resumption_token: str | None) -> str:
        if resumption_token is None:
            params = {"verb": "ListRecords", **self.query}
        else:
            params = {"verb": "ListRecords", "resumptionToken": resumption_token}
        return f"{self.base_url}?{urlencode(params)}"

    def fetch_page(
        self,
        resumption_token: str | None,
        sleep: Callable[[float], None] = time.sleep,
        notify: Callable[[str], None] = print,
    ) -> Page:
        """Fetch and parse one page, waiting out 503/429 answers as the server's Retry-After asks."""
        url = self.page_url(resumption_token)
        attempt = 0
        while True:
            attempt += 1
            try:
                with urlopen(url, timeout=REQUEST_TIMEOUT_S) as response:
                    body = response.read()
            except HTTPError as error:
                busy = error.code in (429, 503)
                if busy and attempt <= MAX_BUSY_RETRIES:
                    wait = retry_after_seconds(error.headers.get("Retry-After"))
                    notify(f"arXiv is busy (HTTP {error.code}); retrying in {wait:.0f} s as it asked")
                    sleep(wait)
                    continue
                still = f" after {MAX_BUSY_RETRIES} waits" if busy else ""
                raise TitlecraftError(
                    f"the OAI-PMH server at {self.base_url} answered HTTP {error.code} ({error.reason}){still}"
                ) from None
            except (OSError, http.client.HTTPException) as error:  # URLError, refused, reset, timed out
                reason = getattr(error, "reason", None) or error
                raise TitlecraftError(
                    f"cannot reach the arXiv OAI-PMH server at {self.base_url} ({reason}). "
                    f"Check the internet connection, or point {OAI_URL_ENV} at a reachable endpoint."
                ) from None
            return parse_page(body, self.source)


@dataclass
class HarvestState:
    """Progress of one harvest, saved after every page so that a re-run resumes instead of restarting.

    The folder ``OUT.partial`` holds ``page-NNNNN.jsonl`` files and ``state.json``; each is written to a
    temporary name and renamed, and ``state.json`` is written last, so it only ever counts complete pages.
    """

    folder: Path
    request: dict
    defaulted: list[str] = field(default_factory=list)  # request values filled in from today's date
    pages: int = 0
    records: int = 0
    resumption_token: str | None = None
    complete_list_size: int | None = None
    finished: bool = False

    @classmethod
    def open(cls, folder: Path, request: dict, defaulted: Sequence[str] = ()) -> HarvestState:
        """The saved state for this request, or a fresh one; a different saved request is an error.

        ``defaulted`` names the request values the user left to their defaults (from/until, which depend
        on today's date); where the saved request defaulted them too, its values are kept, so the same
        command resumes on a later day.
        """
        state_file = folder / "state.json"
        if not state_file.is_file():
            return cls(folder, request, sorted(defaulted))
        saved = json.loads(state_file.read_text(encoding="utf-8"))
        inherited = set(defaulted).intersection(saved.get("defaulted", []))
        if saved["request"] != {**request, **{key: saved["request"][key] for key in inherited}}:
            raise TitlecraftError(
                f"{folder} holds an unfinished harvest of a different request ({saved['request']}); "
                "re-run that command to finish it, or delete the folder to start this one"
            )
        return cls(folder, **saved)

    def restart_list(self) -> None:
        """Request the list again from its start once its token has expired. Saved pages are kept (a
        record seen twice is written once); the record count follows the new list, as the bar does."""
        self.resumption_token = None
        self.records = 0

    @property
    def resumed(self) -> bool:
        return self.pages > 0

    def _page_file(self, number: int) -> Path:
        return self.folder / f"page-{number:05d}.jsonl"

    def add_page(self, rows: Sequence[dict], page: Page) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        lines = "".join(json.dumps(row, ensure_ascii=False) + "\n" for row in rows)
        write_text_atomically(self._page_file(self.pages + 1), lines)
        self.pages += 1
        self.records += page.records
        self.resumption_token = page.resumption_token
        self.complete_list_size = page.complete_list_size or self.complete_list_size
        self.finished = page.resumption_token is None
        fields = ("request", "defaulted", "pages", "records", "resumption_token", "complete_list_size", "finished")
        write_text_atomically(self.folder / "state.json", json.dumps({f: getattr(self, f) for f in fields}))

    def rows(self) -> list[dict]:
        rows: list[dict] = []
        for number in range(1, self.pages + 1):
            with self._page_file(number).open(encoding="utf-8") as lines:
                rows += [json.loads(line) for line in lines]
        return rows


def _wanted(row: dict, subcats: frozenset[str]) -> bool:
    return not subcats or bool(subcats.intersection((row["categories"] or "").split()))


def _write_pairs(rows: list[dict], out: Path) -> None:
    """Write rows as a pair parquet, one row per arXiv id (the latest harvested record wins)."""
    latest = {row["arxiv_id"]: row for row in rows}
    out.parent.mkdir(parents=True, exist_ok=True)
    temporary = out.with_name(out.name + ".tmp")
    pq.write_table(pa.Table.from_pylist(list(latest.values()), schema=PAIR_SCHEMA), temporary)
    os.replace(temporary, out)


@dataclass(frozen=True)
class HarvestResult:
    out: Path
    rows: int
    records: int
    pages: int
    resumed: bool


def parse_subcats(subcats: Iterable[str]) -> frozenset[str]:
    """Validate arXiv category names such as ``cs.AI`` or ``hep-ex`` used to filter harvested records;
    known names are spelled as arXiv does, so that ``cs.ai`` matches records in cs.AI."""
    names = frozenset(_CATEGORY_SPELLING.get(name.strip().lower(), name.strip()) for name in subcats if name.strip())
    bad = sorted(name for name in names if not _SUBCATEGORY.match(name))
    if bad:
        raise TitlecraftError(f"not arXiv category names: {', '.join(bad)} (expected e.g. cs.AI or hep-ex)")
    _warn_of_unknown_categories(names)
    return names


def _warn_of_unknown_categories(names: Iterable[str]) -> None:
    """Name, before a harvest of hours, a well-formed name arXiv does not list (cs.Al for cs.AI): it keeps
    no record. A warning, not an error, as arXiv adds categories and old papers keep retired ones."""
    for name in sorted(set(names) - set(_CATEGORY_SPELLING.values())):
        warnings.warn(
            f"--subcats {name} is not an arXiv category titlecraft knows: only records that list it are kept, "
            "so check its spelling (e.g. cs.AI)",
            TitlecraftWarning,
            stacklevel=4,
        )


def _check_date(value: str | None) -> str | None:
    if value is not None:
        try:
            date.fromisoformat(value)
        except ValueError:
            raise TitlecraftError(f"not a date: {value!r} (expected YYYY-MM-DD)") from None
    return value


def _refuse_out_that_is_no_file(out: str | os.PathLike) -> None:
    """Refuse, before any request, an ``out`` that cannot become the parquet file: a folder (existing, or
    named with a trailing slash), a path below a file, or a name without the .parquet suffix. The harvest
    otherwise failed only when it wrote its result, after every page, or after its first page, with a bare
    OS message; and --out pairs.jsonl got parquet bytes under that name, which prepare refuses (it reads
    pair files by their suffix) and import cannot decode."""
    path = Path(out)
    if path.is_dir() or os.fspath(out).endswith(("/", os.sep)):
        raise TitlecraftError(
            f"cannot write {path}: it is a folder; name the parquet file to write, e.g. {path / 'arxiv.parquet'}"
        )
    if path.suffix.lower() != ".parquet":
        # a data file's suffix is replaced; others are part of the name (arxiv-cs.AI, a category)
        replaced = path.suffix.lower() in (".jsonl", ".json", ".csv", ".pq", ".txt")
        suggestion = path.with_suffix(".parquet") if replaced else path.with_name(path.name + ".parquet")
        raise TitlecraftError(
            f"cannot write {path}: scrape writes a parquet file, so name it with .parquet, e.g. {suggestion}"
        )
    refuse_file_in_the_way(path)


def _saved_advice(state: HarvestState) -> str:
    """What a harvest stopped early (ctrl+c, a page that failed) kept, so the researcher knows that
    re-running it resumes."""
    if not state.resumed:
        return "no page was saved yet; the same command starts the harvest again"
    return f"{state.records} records are saved in {state.folder}; run the same command again to resume"


def harvest(
    category: str,
    out: str | os.PathLike,
    *,
    subcats: Iterable[str] = (),
    date_from: str | None = None,
    date_until: str | None = None,
    base_url: str | None = None,
    sleep: Callable[[float], None] = time.sleep,
    progress: bool = True,
) -> HarvestResult:
    """Harvest an arXiv set into ``out`` (pair parquet), keeping records in any of ``subcats``.

    Re-running the same call after an interruption continues from the last saved page; if the server
    has forgotten the saved resumption token, the list is requested again from its start, keeping the
    saved records (each arXiv id is written once).
    """
    _refuse_out_that_is_no_file(out)
    out = Path(out)
    wanted = parse_subcats(subcats)
    date_from, date_until = _check_date(date_from), _check_date(date_until)
    if date_from and date_until and date_until < date_from:
        raise TitlecraftError(f"--until {date_until} is before --from {date_from}: no record can match")
    request = {**ArxivHarvester(category, date_from, date_until, base_url).query, "subcats": sorted(wanted)}
    defaulted = [name for name, given in (("from", date_from), ("until", date_until)) if given is None]
    state = HarvestState.open(out.with_name(out.name + PARTIAL_SUFFIX), request, defaulted)
    harvester = ArxivHarvester(category, state.request["from"], state.request["until"], base_url)
    resumed = state.resumed
    with tqdm(
        total=state.complete_list_size,
        initial=state.records,
        unit="rec",
        desc=f"harvest {category}",
        disable=not progress,
    ) as bar:
        restarted = False
        while not state.finished:
            try:
                page = harvester.fetch_page(state.resumption_token, sleep=sleep, notify=bar.write)
            except KeyboardInterrupt:
                raise KeyboardInterrupt(_saved_advice(state)) from None
            except TitlecraftError as error:
                if isinstance(error, ExpiredResumptionToken) and not restarted:
                    bar.write(
                        "the server has forgotten where this harvest stopped (its resumption token expired); "
                        f"requesting the list again from its start, keeping the {state.pages} page(s) saved"
                    )
                    restarted = True
                    state.restart_list()
                    bar.reset()
                    continue
                if state.resumed:
                    raise TitlecraftError(f"{str(error).rstrip('.')}. {_saved_advice(state)}") from None
                raise
            state.add_page([row for row in page.rows if _wanted(row, wanted)], page)
            if state.complete_list_size and bar.total != state.complete_list_size:
                bar.total = state.complete_list_size
            bar.update(page.records)
    rows = state.rows()
    _write_pairs(rows, out)
    shutil.rmtree(state.folder, ignore_errors=True)
    return HarvestResult(out, len({row["arxiv_id"] for row in rows}), state.records, state.pages, resumed)
