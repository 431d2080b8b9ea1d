"""Harvesting against real recorded arXiv OAI-PMH pages served from a local HTTP server."""

from __future__ import annotations

import email.utils
import json
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

import pyarrow.parquet as pq
import pytest

from core.arxiv import OAI_URL_ENV, PARTIAL_SUFFIX, harvest, parse_page, parse_subcats, retry_after_seconds
from core.cli import main
from core.dataset import PAIR_COLUMNS
from core.errors import TitlecraftError, TitlecraftWarning

REPO = Path(__file__).resolve().parents[1]
OAI_PAGES = Path(__file__).resolve().parents[2] / "shared" / "data" / "oai"
HEP_EX = (OAI_PAGES / "arxiv-listrecords-hep-ex-2017-12-14.xml").read_bytes()
HEP_TH = (OAI_PAGES / "arxiv-listrecords-hep-th-2017-12-14.xml").read_bytes()
ARXIV_RAW = (OAI_PAGES / "arxivraw-listrecords-with-resumptiontoken-2015-01-06.xml").read_bytes()
RAW_TOKEN = "726959|1001"  # the real token recorded in the arXivRaw page
HEP_EX_IDS = ["1706.05371", "1706.09418", "1707.00874"]

Reply = tuple[int, dict[str, str], bytes]
Responder = Callable[[dict[str, str]], Reply]


def with_token(page: bytes, token: str) -> bytes:
    """A recorded page that continues: a resumptionToken injected where OAI-PMH puts it."""
    element = f'<resumptionToken cursor="0" completeListSize="6">{token}</resumptionToken>'
    return page.replace(b"</ListRecords>", element.encode() + b"</ListRecords>")


def ok(page: bytes) -> Reply:
    return 200, {"Content-Type": "text/xml; charset=utf-8"}, page


def pages(first: bytes, by_token: dict[str, bytes]) -> Responder:
    """Serve ``first`` for the initial request and ``by_token[token]`` for each resumption request."""
    return lambda params: ok(by_token[params["resumptionToken"]] if "resumptionToken" in params else first)


@contextmanager
def oai_server(respond: Responder) -> Iterator[tuple[str, list[dict[str, str]]]]:
    """A local OAI-PMH endpoint on an ephemeral port; yields its URL and the log of request parameters."""
    requests: list[dict[str, str]] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):
            params = dict(parse_qsl(urlsplit(self.path).query))
            requests.append(params)
            status, headers, body = respond(params)
            try:
                self.send_response(status)
                for name, value in {**headers, "Content-Length": str(len(body))}.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(body)
            except OSError:  # the client was killed while waiting
                pass

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/oai2", requests
    finally:
        server.shutdown()
        server.server_close()


def read_rows(path: Path) -> list[dict]:
    return pq.read_table(path).to_pylist()


def test_single_page_keeps_case_and_collapses_line_breaks(tmp_path):
    out = tmp_path / "raw" / "hep-ex.parquet"
    with oai_server(pages(HEP_EX, {})) as (url, requests):
        result = harvest("hep-ex", out, date_from="2017-12-14", date_until="2017-12-15", base_url=url, progress=False)

    assert requests == [
        {"verb": "ListRecords", "from": "2017-12-14", "until": "2017-12-15", "metadataPrefix": "arXiv", "set": "physics:hep-ex"}
    ]
    assert (result.rows, result.records, result.pages, result.resumed) == (3, 3, 1, False)
    assert pq.read_schema(out).names == list(PAIR_COLUMNS)
    rows = read_rows(out)
    assert [row["arxiv_id"] for row in rows] == HEP_EX_IDS
    first = rows[0]
    assert first["title"] == "Evaluation of Silicon Photomultipliers for use as Photosensors in Liquid Xenon Detectors"
    assert first["abstract"].startswith("Silicon photomultipliers (SiPMs) are potential solid-state alternatives to traditional")
    assert "\n" not in first["abstract"] and "  " not in first["abstract"]
    assert (first["categories"], first["date"]) == ("physics.ins-det hep-ex", "2017-06-16")
    assert first["source"] == f"{url}?set=physics:hep-ex"
    assert not out.with_name(out.name + PARTIAL_SUFFIX).exists()


def test_follows_resumption_tokens_across_pages_and_reads_arxivraw(tmp_path):
    out = tmp_path / "pages.parquet"
    responder = pages(with_token(HEP_EX, "page-2"), {"page-2": ARXIV_RAW, RAW_TOKEN: HEP_TH})
    with oai_server(responder) as (url, requests):
        result = harvest("hep-ex", out, base_url=url, progress=False)

    assert requests[1:] == [
        {"verb": "ListRecords", "resumptionToken": "page-2"},
        {"verb": "ListRecords", "resumptionToken": RAW_TOKEN},
    ]
    rows = read_rows(out)
    assert result.pages == 3 and result.rows == len(rows) == 12
    assert len({row["arxiv_id"] for row in rows}) == 12
    raw = next(row for row in rows if row["arxiv_id"] == "0704.0471")
    assert raw["date"] == "2007-04-03"  # arXivRaw: the v1 version date
    assert raw["title"] == (
        "Density dependence of the symmetry energy and the nuclear equation of state: "
        "A Dynamical and Statistical model perspective"
    )
    assert 'extremely " stiff " and " soft " form' in raw["abstract"]  # &quot; decoded


def test_503_with_retry_after_waits_as_asked_then_succeeds(tmp_path):
    answers = iter([(503, {"Retry-After": "7"}, b"busy"), ok(HEP_EX)])
    waits: list[float] = []
    with oai_server(lambda params: next(answers)) as (url, requests):
        result = harvest("hep-ex", tmp_path / "out.parquet", base_url=url, sleep=waits.append, progress=False)
    assert waits == [7.0]
    assert len(requests) == 2 and result.rows == 3


def test_a_server_that_stays_busy_is_a_clear_error(tmp_path):
    waits: list[float] = []
    with oai_server(lambda params: (503, {"Retry-After": "1"}, b"busy")) as (url, _):
        with pytest.raises(TitlecraftError, match="answered HTTP 503 .* after 5 waits"):
            harvest("hep-ex", tmp_path / "out.parquet", base_url=url, sleep=waits.append, progress=False)
    assert waits == [1.0] * 5


def test_retry_after_accepts_seconds_and_http_dates():
    assert retry_after_seconds("12") == 12.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0  # in the past: no wait
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 -0000") == 0.0  # zone unknown: UTC
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00") == 0.0
    in_a_minute = email.utils.format_datetime(datetime.now(timezone.utc) + timedelta(seconds=60)).replace("+0000", "-0000")
    assert 50 < retry_after_seconds(in_a_minute) <= 60
    assert retry_after_seconds(None) == retry_after_seconds("soon") == 30


def test_failure_midway_keeps_pages_and_rerun_resumes(tmp_path):
    out = tmp_path / "out.parquet"
    failures = iter([True])

    def respond(params):
        if "resumptionToken" in params and next(failures, False):
            return 500, {}, b"internal error"
        return pages(with_token(HEP_EX, "page-2"), {"page-2": HEP_TH})(params)

    with oai_server(respond) as (url, requests):
        with pytest.raises(TitlecraftError, match="run the same command again to resume"):
            harvest("hep-ex", out, base_url=url, progress=False)
        assert not out.exists() and out.with_name(out.name + PARTIAL_SUFFIX).is_dir()
        with pytest.raises(TitlecraftError, match="different request"):
            harvest("hep-ex", out, date_from="2017-01-01", base_url=url, progress=False)
        before = len(requests)
        result = harvest("hep-ex", out, base_url=url, progress=False)

    assert requests[before:] == [{"verb": "ListRecords", "resumptionToken": "page-2"}]
    assert result.resumed and result.rows == 6
    assert len({row["arxiv_id"] for row in read_rows(out)}) == 6


BAD_TOKEN = (
    b'<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/">'
    b'<error code="badResumptionToken">The value of the resumptionToken argument is invalid or expired.</error></OAI-PMH>'
)


def token_expiring_after_a_failure():
    """A server whose page 2 fails once and is then forgotten (its token expired); a new list hands
    out a new token."""
    first_tokens = iter(["page-2"])
    page_two = iter([(500, {}, b"internal error")])

    def respond(params):
        if "resumptionToken" not in params:
            return ok(with_token(HEP_EX, next(first_tokens, "page-2-again")))
        if params["resumptionToken"] == "page-2":
            return next(page_two, ok(BAD_TOKEN))
        return ok(HEP_TH)

    return respond


def test_a_resume_whose_token_expired_restarts_the_list_and_keeps_saved_records(tmp_path, capsys):
    out = tmp_path / "out.parquet"
    with oai_server(token_expiring_after_a_failure()) as (url, requests):
        with pytest.raises(TitlecraftError, match="run the same command again to resume"):
            harvest("hep-ex", out, base_url=url, progress=False)
        before = len(requests)
        result = harvest("hep-ex", out, base_url=url, progress=False)

    assert [params.get("resumptionToken") for params in requests[before:]] == ["page-2", None, "page-2-again"]
    assert "resumption token expired" in capsys.readouterr().out
    rows = read_rows(out)
    assert result.resumed and result.rows == len(rows) == 6 == len({row["arxiv_id"] for row in rows})
    assert not out.with_name(out.name + PARTIAL_SUFFIX).exists()


def test_ctrl_c_says_what_the_harvest_saved_and_that_the_same_command_resumes(tmp_path):
    """A harvest of hours stopped with ctrl+c printed a bare 'interrupted', though its pages are kept and
    re-running resumes: it now says so, as a failed page and an interrupted training run do."""
    out = tmp_path / "out.parquet"

    def ctrl_c(_seconds):
        raise KeyboardInterrupt

    def busy_after_the_first_page(params):
        return (503, {"Retry-After": "60"}, b"busy") if "resumptionToken" in params else ok(with_token(HEP_EX, "page-2"))

    with oai_server(busy_after_the_first_page) as (url, _):
        with pytest.raises(KeyboardInterrupt) as stopped:
            harvest("hep-ex", out, base_url=url, sleep=ctrl_c, progress=False)
    partial = out.with_name(out.name + PARTIAL_SUFFIX)
    assert str(stopped.value) == f"3 records are saved in {partial}; run the same command again to resume"
    assert partial.is_dir() and not out.exists()

    with oai_server(lambda params: (503, {}, b"busy")) as (url, _):
        with pytest.raises(KeyboardInterrupt, match="^no page was saved yet; the same command starts the harvest again$"):
            harvest("hep-ex", tmp_path / "other.parquet", base_url=url, sleep=ctrl_c, progress=False)


def test_a_token_that_expires_again_in_the_same_run_is_a_clear_error(tmp_path):
    def respond(params):
        return ok(BAD_TOKEN) if "resumptionToken" in params else ok(with_token(HEP_EX, "page-2"))

    with oai_server(respond) as (url, requests):
        with pytest.raises(TitlecraftError, match="badResumptionToken"):
            harvest("hep-ex", tmp_path / "out.parquet", base_url=url, progress=False)
        before = len(requests)
        with pytest.raises(TitlecraftError, match="3 records are saved"):
            harvest("hep-ex", tmp_path / "out.parquet", base_url=url, progress=False)
    assert [params.get("resumptionToken") for params in requests[before:]] == ["page-2", None, "page-2"]


def test_a_harvest_with_default_dates_resumes_on_a_later_day(tmp_path):
    out = tmp_path / "out.parquet"
    with oai_server(token_expiring_after_a_failure()) as (url, requests):
        with pytest.raises(TitlecraftError, match="run the same command again to resume"):
            harvest("hep-ex", out, base_url=url, progress=False)
        state_file = out.with_name(out.name + PARTIAL_SUFFIX) / "state.json"
        state = json.loads(state_file.read_text())
        assert state["defaulted"] == ["from", "until"]
        state["request"].update({"from": "2017-12-01", "until": "2017-12-14"})  # as saved on an earlier day
        state_file.write_text(json.dumps(state))
        before = len(requests)
        result = harvest("hep-ex", out, base_url=url, progress=False)

    restarted = requests[before + 1]  # the token expired, so the list is requested again with the saved dates
    assert (restarted["from"], restarted["until"]) == ("2017-12-01", "2017-12-14")
    assert result.resumed and result.rows == 6


def test_killed_harvest_resumes_without_duplicates(tmp_path):
    out = tmp_path / "out.parquet"
    page_two_requested, release = threading.Event(), threading.Event()
    serve = pages(with_token(HEP_EX, "page-2"), {"page-2": HEP_TH})

    def respond(params):
        if "resumptionToken" in params and not page_two_requested.is_set():
            page_two_requested.set()
            release.wait(30)  # hold the request open until the client has been killed
        return serve(params)

    script = "import sys; from core.arxiv import harvest; harvest('hep-ex', sys.argv[1], progress=False)"
    with oai_server(respond) as (url, requests):
        process = subprocess.Popen(
            [sys.executable, "-c", script, str(out)], cwd=REPO, env={**os.environ, OAI_URL_ENV: url}
        )
        try:
            assert page_two_requested.wait(60), "the harvest never asked for page 2"
            os.kill(process.pid, signal.SIGKILL)
            process.wait(30)
        finally:
            release.set()
        before = len(requests)
        result = harvest("hep-ex", out, base_url=url, progress=False)

    assert process.returncode == -signal.SIGKILL
    assert requests[before:] == [{"verb": "ListRecords", "resumptionToken": "page-2"}]
    rows = read_rows(out)
    assert result.resumed and len(rows) == 6 == len({row["arxiv_id"] for row in rows})


def _unused_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_offline_fails_with_a_clear_message(tmp_path, monkeypatch, capsys):
    url = f"http://127.0.0.1:{_unused_port()}/oai2"
    with pytest.raises(TitlecraftError, match=f"cannot reach the arXiv OAI-PMH server at {url}"):
        harvest("cs", tmp_path / "out.parquet", base_url=url, progress=False)

    monkeypatch.setenv(OAI_URL_ENV, url)
    assert main(["scrape", "--category", "cs", "--out", str(tmp_path / "cli.parquet")]) == 2
    error = capsys.readouterr().err
    assert error.splitlines()[-1].startswith("error: cannot reach") and "Traceback" not in error
    assert list(tmp_path.iterdir()) == []


def test_cli_uses_env_url_and_keeps_only_requested_subcats(tmp_path, monkeypatch, capsys):
    out = tmp_path / "raw" / "hep-ph.parquet"
    with oai_server(pages(HEP_EX, {})) as (url, requests):
        monkeypatch.setenv(OAI_URL_ENV, url)
        code = main(
            ["scrape", "--category", "hep-ex", "--subcats", "hep-ph,cs.AI", "--from", "2017-12-14", "--out", str(out)]
        )
    assert code == 0 and len(requests) == 1
    assert [row["arxiv_id"] for row in read_rows(out)] == HEP_EX_IDS[1:]
    assert "2 pairs written" in capsys.readouterr().out


def test_every_value_of_a_repeated_subcats_option_is_kept(tmp_path, capsys):
    """argparse kept only the last `--subcats`: `--subcats hep-ph --subcats cs.AI` kept cs.AI records alone."""
    out = tmp_path / "hep-ph.parquet"
    with oai_server(pages(HEP_EX, {})) as (url, _):
        args = ["scrape", "--category", "hep-ex", "--subcats", "hep-ph", "--subcats", "cs.AI", "--oai-url", url]
        assert main([*args, "--out", str(out)]) == 0
    assert [row["arxiv_id"] for row in read_rows(out)] == HEP_EX_IDS[1:]
    assert "2 pairs written" in capsys.readouterr().out


def test_subcats_are_matched_in_any_case(tmp_path):
    assert parse_subcats(["cs.ai", " HEP-PH ", "astro-ph.co", "cond-mat.MES-HALL"]) == {
        "cs.AI", "hep-ph", "astro-ph.CO", "cond-mat.mes-hall"
    }
    out = tmp_path / "hep-ph.parquet"
    with oai_server(pages(HEP_EX, {})) as (url, _):
        harvest("hep-ex", out, subcats=["Hep-Ph"], base_url=url, progress=False)
    assert [row["arxiv_id"] for row in read_rows(out)] == HEP_EX_IDS[1:]


def test_a_subcategory_arxiv_does_not_have_is_named_before_the_harvest(tmp_path):
    """A well-formed typo (cs.Al for cs.AI) passed the name check and was matched against every record of
    a harvest that can take hours, keeping none of its papers without a word."""
    out = tmp_path / "hep-ph.parquet"
    with oai_server(pages(HEP_EX, {})) as (url, _):
        with pytest.warns(TitlecraftWarning, match=r"--subcats cs\.Al is not an arXiv category .*check its spelling"):
            harvest("hep-ex", out, subcats=["hep-ph", "cs.Al"], base_url=url, progress=False)
    assert [row["arxiv_id"] for row in read_rows(out)] == HEP_EX_IDS[1:]


def test_bad_arguments_are_user_errors(tmp_path):
    with pytest.raises(TitlecraftError, match="Invalid category"):
        harvest("nonsense", tmp_path / "x.parquet", progress=False)
    with pytest.raises(TitlecraftError, match="not arXiv category names: cs AI"):
        harvest("cs", tmp_path / "x.parquet", subcats=["cs AI"], progress=False)
    with pytest.raises(TitlecraftError, match="not a date"):
        harvest("cs", tmp_path / "x.parquet", date_from="2020-13-01", progress=False)
    with pytest.raises(TitlecraftError, match="--until 2020-01-01 is before --from 2020-02-01"):
        harvest("cs", tmp_path / "x.parquet", date_from="2020-02-01", date_until="2020-01-01", progress=False)
    assert not list(tmp_path.iterdir())


def test_no_records_match_writes_an_empty_pair_file(tmp_path):
    empty = (
        b'<?xml version="1.0" encoding="UTF-8"?><OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/">'
        b'<error code="noRecordsMatch">nothing</error></OAI-PMH>'
    )
    out = tmp_path / "none.parquet"
    with oai_server(lambda params: ok(empty)) as (url, _):
        assert harvest("cs", out, base_url=url, progress=False).rows == 0
    assert pq.read_schema(out).names == list(PAIR_COLUMNS) and read_rows(out) == []


def test_deleted_records_and_other_oai_errors():
    deleted = HEP_EX.replace(b"<header>", b'<header status="deleted">', 1)
    assert [row["arxiv_id"] for row in parse_page(deleted, "s").rows] == HEP_EX_IDS[1:]
    bad = b'<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/"><error code="badResumptionToken">expired</error></OAI-PMH>'
    with pytest.raises(TitlecraftError, match="badResumptionToken: expired"):
        parse_page(bad, "s")
    with pytest.raises(TitlecraftError, match="not valid XML"):
        parse_page(b"<html>oops", "s")


def test_an_out_that_cannot_be_the_parquet_file_is_refused_before_any_request(tmp_path, capsys):
    # A folder as --out failed only after the whole harvest, as "Is a directory (OUT.tmp)", leaving
    # OUT.tmp behind; a file among its folders failed after the first page as a bare "Not a directory".
    folder = tmp_path / "raw"
    folder.mkdir()
    (tmp_path / "notes.txt").write_text("mine")
    with oai_server(pages(HEP_EX, {})) as (url, requests):
        for out, problem in [
            (str(folder), f"cannot write {folder}: it is a folder"),
            (str(tmp_path / "new") + "/", f"cannot write {tmp_path / 'new'}: it is a folder"),
            (str(tmp_path / "notes.txt" / "x.parquet"), f"{tmp_path / 'notes.txt'} is a file, not a folder"),
            # parquet bytes under another suffix: prepare refused the file and import could not decode it
            (str(tmp_path / "pairs.jsonl"), f"name it with .parquet, e.g. {tmp_path / 'pairs.parquet'}"),
            (str(tmp_path / "cs.AI"), f"name it with .parquet, e.g. {tmp_path / 'cs.AI.parquet'}"),
        ]:
            assert main(["scrape", "--category", "hep-ex", "--oai-url", url, "--out", out]) == 2
            err = capsys.readouterr().err
            assert err.startswith("error: ") and problem in err
    assert requests == []
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["notes.txt", "raw"]


def test_a_finished_harvest_at_the_default_out_is_never_replaced_by_another(tmp_path, monkeypatch, capsys):
    """The default name holds neither the subcategories nor the month a defaulted --from stands for, so
    another harvest (other subcats, or next month's) silently replaced the earlier one's file."""
    monkeypatch.chdir(tmp_path)
    default_out = tmp_path / "data" / "raw" / "arxiv-hep-ex-month-today.parquet"
    with oai_server(pages(HEP_EX, {})) as (url, requests):
        monkeypatch.setenv(OAI_URL_ENV, url)
        assert main(["scrape", "--category", "hep-ex", "--subcats", "hep-ph"]) == 0
        kept = read_rows(default_out)
        assert main(["scrape", "--category", "hep-ex", "--subcats", "hep-ex"]) == 2
        error = capsys.readouterr().err
        assert f"{Path('data/raw/arxiv-hep-ex-month-today.parquet')} holds an earlier harvest" in error
        assert "--out" in error and len(requests) == 1
        assert read_rows(default_out) == kept
        assert main(["scrape", "--category", "hep-ex", "--subcats", "hep-ex", "--out", "hep-ex.parquet"]) == 0
