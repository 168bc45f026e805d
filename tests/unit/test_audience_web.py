"""`GET /audiences` across workers (issue 20): the worker asked fans the query out to every worker owning partitions of
the customer table, each answers for its own (a forwarded query never fans out again), and the pages merged by id,
followed by their cursor, are the whole audience once. Real processors (over the fakes of stream_fakes.py) hold the
customers; Faust's app, web driver and HTTP client are faked here, each worker's pages reachable at its URL."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from multidict import CIMultiDict, MultiDict
from prometheus_client import CollectorRegistry
from pydantic import SecretStr
from yarl import URL

from engine.broker.partitioner import partition_of
from engine.loyalty import DEFAULT_POLICY, CustomerState
from engine.loyalty.audience import encode_cursor, parse_audience
from engine.loyalty.view import view
from engine.stream import web as pages
from engine.stream.web import serve_pages
from tests.unit.stream_fakes import Harness
from tests.unit.test_audience import population

pytestmark = pytest.mark.unit

PARTITIONS = 4


@dataclass
class Answer:
    """What a page answered: as aiohttp's response, as far as the pages and the tests read it."""

    status: int
    body: bytes
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"

    def json(self) -> Any:
        return orjson.loads(self.body)

    async def read(self) -> bytes:
        return self.body


class FakeWeb:
    """Faust's view, as the pages use it: it makes responses."""

    def json(self, value: Any, *, status: int = 200, headers: dict[str, str] | None = None, **_: Any) -> Answer:
        return Answer(status, orjson.dumps(value), dict(headers or {}))

    def bytes(self, value: bytes, *, status: int = 200, headers: dict[str, str] | None = None,
              content_type: str | None = None, **_: Any) -> Answer:  # fmt: skip
        return Answer(status, value, dict(headers or {}), content_type or "application/octet-stream")


@dataclass
class FakeRequest:
    url: URL
    headers: CIMultiDict[str]

    @property
    def query(self) -> MultiDict[str]:
        return MultiDict(self.url.query)


class Network:
    """Every fake worker by URL: an HTTP GET reaches the pages of the worker at its host and port (or fails)."""

    def __init__(self) -> None:
        self.workers: dict[tuple[str, int], FakeWorker] = {}
        self.asked: list[tuple[URL, dict[str, str]]] = []  # every request between workers: URL and headers
        self.down: set[int] = set()  # ports that do not answer

    @asynccontextmanager
    async def get(self, url: URL, headers: dict[str, str], timeout: Any = None) -> AsyncIterator[Answer]:
        url = URL(url)
        self.asked.append((url, dict(headers)))
        if url.port in self.down:
            raise TimeoutError("no answer")
        yield await self.workers[(url.host or "", url.port or 80)].get(str(url.relative()), headers)


class FakeWorker:
    """One worker: a processor owning some partitions, the app around it as the pages see it, its pages."""

    def __init__(
        self,
        network: Network,
        port: int,
        owned: Iterable[int],
        states: Iterable[CustomerState],
        token: str | None = None,
        assignment: Callable[[], dict[str, list[int]]] | None = None,
    ) -> None:
        self.network, self.port = network, port
        self.url = URL(f"http://127.0.0.1:{port}")
        self.harness = Harness(partitions=PARTITIONS, owned=owned)
        for state in states:
            self.harness.table.put(state)
        self.harness.run()  # an empty batch: the partitions owned are learned from the table
        self.assignment = assignment or (lambda: {})
        self.routes: dict[str, Callable[..., Any]] = {}
        done = SimpleNamespace(is_set=lambda: True)
        self.app = SimpleNamespace(
            page=self._page,
            conf=SimpleNamespace(canonical_url=self.url),
            router=SimpleNamespace(table_metadata=self._table_metadata, key_store=self._key_store),
            tables=SimpleNamespace(recovery=SimpleNamespace(completed=done)),
            rebalancing=False,
            http_client=network,
        )
        serve_pages(self.app, self.harness.processor, CollectorRegistry(),  # type: ignore[arg-type]
                    None if token is None else SecretStr(token))  # fmt: skip
        network.workers[("127.0.0.1", port)] = self

    def _page(self, path: str) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
        def register(handler: Callable[..., Any]) -> Callable[..., Any]:
            self.routes[path] = handler
            return handler

        return register

    def _table_metadata(self, table_name: str) -> dict[str, dict[str, list[int]]]:
        assert table_name == self.harness.processor.table_name
        return {url: {f"{table_name}-changelog": partitions} for url, partitions in self.assignment().items()}

    def _key_store(self, table_name: str, key: bytes) -> URL:
        partition = partition_of(key, PARTITIONS)
        return URL(next(url for url, parts in self.assignment().items() if partition in parts))

    async def get(self, target: str, headers: dict[str, str] | None = None) -> Answer:
        """GET a path (with its query) of this worker's pages."""
        url = self.url.join(URL(target))
        request = FakeRequest(url, CIMultiDict(headers or {}))
        if url.path.startswith("/customers/"):
            answer = await self.routes["/customers/{customer_id}"](FakeWeb(), request, url.path.split("/", 2)[2])
        else:
            answer = await self.routes[url.path](FakeWeb(), request)
        assert isinstance(answer, Answer)
        return answer

    def ask(self, target: str, headers: dict[str, str] | None = None) -> Answer:
        return asyncio.run(self.get(target, headers))


def shop() -> list[CustomerState]:
    return list(population().values())


def cluster(shares: list[list[int]], token: str | None = None) -> tuple[Network, list[FakeWorker]]:
    """Workers sharing the partitions, each holding the shop's customers of its own."""
    network = Network()
    urls = [f"http://127.0.0.1:{7000 + n}" for n in range(len(shares))]

    def assignment() -> dict[str, list[int]]:
        return dict(zip(urls, shares, strict=True))

    everyone = shop()
    workers = []
    for n, owned in enumerate(shares):
        mine = [s for s in everyone if partition_of(s.customer_id.encode(), PARTITIONS) in owned]
        workers.append(FakeWorker(network, 7000 + n, owned, mine, token, assignment))
    return network, workers


def expected(query: dict[str, str]) -> list[str]:
    audience = parse_audience(query, prefix="")
    return sorted(s.customer_id for s in shop() if audience.admits_state(s))


def page_through(worker: FakeWorker, query: str, limit: int, headers: dict[str, str] | None = None) -> list[Any]:
    """Every page of an audience asked of one worker, following `next`."""
    answers, cursor = [], None
    for _ in range(10_000):
        target = f"/audiences?{query}&limit={limit}" + ("" if cursor is None else f"&cursor={cursor}")
        answer = worker.ask(target, headers)
        assert answer.status == 200, answer.body
        answers.append(answer.json())
        cursor = answer.json()["next"]
        if cursor is None:
            return answers
    raise AssertionError("paging never ended")


QUERIES = {"step=habitual,occasional&relationship=mercenary": {"step": "habitual,occasional",
                                                               "relationship": "mercenary"},
           "activity=active": {"activity": "active"},
           "": {}}  # fmt: skip


@pytest.mark.parametrize("limit", [1, 3, 40])
@pytest.mark.parametrize("shares", [[[0, 2], [1, 3]], [[0], [1, 2], [3]]])
def test_each_worker_asked_pages_through_the_whole_audience_once(shares: list[list[int]], limit: int) -> None:
    network, workers = cluster(shares)
    for query, filters in QUERIES.items():
        wanted = expected(filters)
        assert wanted
        first = None
        for worker in workers:
            answers = page_through(worker, query, limit)
            ids = [c["customer_id"] for a in answers for c in a["customers"]]
            assert ids == wanted  # all of them, each once, by id
            assert all(len(a["customers"]) == limit for a in answers[:-1])
            first = first or answers
            assert answers == first  # whoever is asked, the same pages (stable)
        # each page's customers are the views /customers answers, from their owner
        for answer in first or []:
            for customer in answer["customers"]:
                owner = next(w for w in workers if partition_of(customer["customer_id"].encode(), PARTITIONS)
                             in w.harness.processor.owned_partitions())  # fmt: skip
                assert customer == {**view(owner.harness.processor.customer(customer["customer_id"]),  # type: ignore[arg-type]
                                           DEFAULT_POLICY), "answered_by": str(owner.url)}  # fmt: skip
                assert customer == owner.ask(f"/customers/{customer['customer_id']}").json()
    # the worker asked answered its own partitions itself, and asked each other worker once per page, forwarded
    assert network.asked and all(headers.get(pages.FORWARDED) == "1" for _, headers in network.asked)
    for url, _ in network.asked:
        owner = next(w for w in workers if w.port == url.port)
        assert url.query["partitions"] == ",".join(map(str, owner.harness.processor.owned_partitions()))


def test_a_forwarded_query_answers_for_its_worker_alone_and_never_fans_out() -> None:
    network, workers = cluster([[0, 2], [1, 3]])
    answer = workers[1].ask("/audiences?limit=1000&partitions=1", {pages.FORWARDED: "1"})
    assert answer.status == 200 and network.asked == []
    ids = [c["customer_id"] for c in answer.json()["customers"]]
    assert ids == sorted(s.customer_id for s in shop() if partition_of(s.customer_id.encode(), PARTITIONS) == 1)
    # a partition it does not own: 503, not another worker's customers, not an empty page
    refused = workers[1].ask("/audiences?partitions=0", {pages.FORWARDED: "1"})
    assert refused.status == 503 and "not owned" in refused.json()["error"]


def test_a_partition_without_owner_or_a_silent_worker_is_a_503() -> None:
    _, workers = cluster([[0, 2], [1, 3]])
    workers[0].assignment = lambda: {str(workers[0].url): [0, 2], str(workers[1].url): [1]}  # 3: nobody's yet
    answer = workers[0].ask("/audiences?step=buyer")
    assert answer.status == 503 and "no owner" in answer.json()["error"]
    network2, workers2 = cluster([[0, 2], [1, 3]])
    network2.down.add(workers2[1].port)
    answer = workers2[0].ask("/audiences?step=buyer")
    assert answer.status == 503 and "did not answer" in answer.json()["error"]


@pytest.mark.parametrize(
    ("query", "said"),
    [
        ("step=vip", "step: unknown value 'vip' (known: possible, potential"),
        ("colour=red", "colour: not a filter (known: step, activity"),
        ("limit=0", "limit: a whole number from 1 to 1000"),
        ("cursor=bogus", "cursor: not a cursor this API gave"),
    ],
)
def test_a_bad_query_is_a_400_naming_the_parameter(query: str, said: str) -> None:
    _, workers = cluster([[0, 1, 2, 3]])
    answer = workers[0].ask(f"/audiences?{query}")
    assert answer.status == 400 and answer.json()["error"].startswith(said)


def test_a_cursor_resumes_after_the_id_it_holds() -> None:
    _, workers = cluster([[0, 2], [1, 3]])
    wanted = expected({})
    middle = wanted[len(wanted) // 2]
    answer = workers[1].ask(f"/audiences?limit=5&cursor={encode_cursor(middle)}").json()
    assert [c["customer_id"] for c in answer["customers"]] == wanted[len(wanted) // 2 + 1 :][:5]


def test_a_rare_audience_gives_the_event_loop_turns_while_it_reads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pages, "SCAN_CHUNK", 10)
    _, workers = cluster([[0, 1, 2, 3]])
    turns = itertools.count()

    async def both() -> Any:
        async def other() -> None:
            while True:
                next(turns)
                await asyncio.sleep(0)

        task = asyncio.create_task(other())
        answer = await workers[0].get("/audiences?volume=high&limit=1000")
        task.cancel()
        return answer

    answer = asyncio.run(both())
    assert answer.status == 200 and [c["customer_id"] for c in answer.json()["customers"]] == expected(
        {"volume": "high"}
    )
    assert next(turns) >= len(shop()) // 10 - 1  # another task ran between chunks of reads
