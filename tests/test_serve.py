"""The HTTP API (``python -m recsys serve``): in-process with FastAPI's TestClient, then end to end as a process.

The session's demo run (tests/conftest.py: fusion on all four modalities, TF-IDF text) answers every endpoint
(attention shares for the explanations, text for queries).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.conftest import DEMO_RUN, REPO_ROOT

pytest.importorskip("fastapi")
pytest.importorskip("httpx")  # FastAPI's TestClient

RUN = DEMO_RUN


@pytest.fixture(scope="module")
def served_root(demo_template):
    return demo_template  # only read: a test that damages it copies it first


@pytest.fixture(scope="module")
def app(served_root):
    from recsys.serve import create_app

    return create_app(served_root, RUN)


@pytest.fixture(scope="module")
def client(app):
    from fastapi.testclient import TestClient

    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture(scope="module")
def ids(app):
    model = app.state.served.model
    return {"user": str(model.user_ids[0]), "item": str(model.item_ids[0]), "items": [str(i) for i in model.item_ids]}


def cli(*args: str, workspace) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "recsys", *args, "--workspace", str(workspace)],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )


def cli_in_process(*args: str, workspace) -> subprocess.CompletedProcess:
    """The same command through ``recsys.cli.main`` in this process (no 10 s interpreter and torch start)."""
    import contextlib
    import io

    from recsys.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main([*args, "--workspace", str(workspace)])
    return subprocess.CompletedProcess(args, code, out.getvalue(), err.getvalue())


# ----------------------------------------------------------------------------- in process


def test_health_names_the_run_and_its_size(client, app):
    data = client.get("/health").json()
    model = app.state.served.model
    assert data["status"] == "ok" and data["run_id"] == RUN and data["model"] == "fusion"
    assert (data["items"], data["users"]) == (model.n_items, model.n_users) and data["dataset"] == "demo"


def test_recommend_lists_the_same_items_as_the_cli(client, served_root, ids):
    response = client.get("/recommend", params={"user": ids["user"], "k": 7})
    assert response.status_code == 200
    data = response.json()
    assert data["run_id"] == RUN and data["user"] == ids["user"] and data["k"] == 7
    rows = data["recommendations"]
    assert [r["rank"] for r in rows] == list(range(1, 8))
    assert all(isinstance(r["score"], float) and r["title"] for r in rows) and "explanation" not in rows[0]
    done = cli_in_process("recommend", RUN, "--user", ids["user"], "--k", "7", "--json", workspace=served_root)
    assert done.returncode == 0, done.stderr
    expected = json.loads(done.stdout.strip().splitlines()[-1])["recommendations"]
    assert [r["item_id"] for r in rows] == [r["item_id"] for r in expected]
    assert [r["title"] for r in rows] == [r["title"] for r in expected]
    assert [r["score"] for r in rows] == pytest.approx([r["score"] for r in expected])


def test_recommend_with_explanations_and_diversity(client, ids):
    plain = client.get("/recommend", params={"user": ids["user"], "k": 5}).json()["recommendations"]
    data = client.get("/recommend", params={"user": ids["user"], "k": 5, "explain": "true"}).json()
    rows = data["recommendations"]
    assert [r["item_id"] for r in rows] == [r["item_id"] for r in plain]
    for row in rows:
        explanation = row["explanation"]
        assert explanation["item_id"] == row["item_id"] and explanation["user_id"] == ids["user"]
        assert explanation["sentence"] and explanation["has_attention"]
        shares = [m for m in explanation["modalities"] if not m["missing"]]
        assert {m["modality"] for m in explanation["modalities"]} <= {
            "behaviour",
            "text",
            "image",
            "attributes",
            "popularity",
        }
        assert sum(m["share"] for m in shares) == pytest.approx(explanation["score"], rel=1e-3, abs=1e-4)
    diverse = client.get("/recommend", params={"user": ids["user"], "k": 5, "diversity": 0.9})
    assert diverse.status_code == 200 and len(diverse.json()["recommendations"]) == 5


def test_similar_items_exclude_the_item_and_are_ranked(client, ids):
    data = client.get("/similar", params={"item": ids["item"], "k": 6}).json()
    assert data["item"] == ids["item"] and data["title"]
    similar = data["similar"]
    assert len(similar) == 6 and ids["item"] not in [r["item_id"] for r in similar]
    scores = [r["score"] for r in similar]
    assert scores == sorted(scores, reverse=True) and all(-1.0001 <= s <= 1.0001 for s in scores)


def test_recommend_new_from_likes_and_from_a_query(client, ids, served_root):
    liked = ids["items"][:2]
    data = client.post("/recommend-new", json={"like": liked, "k": 5}).json()
    assert data["like"] == liked and len(data["recommendations"]) == 5
    assert not set(liked) & {r["item_id"] for r in data["recommendations"]}
    done = cli_in_process("recommend-new", RUN, "--like", *liked, "--k", "5", "--json", workspace=served_root)
    assert done.returncode == 0, done.stderr
    expected = json.loads(done.stdout.strip().splitlines()[-1])["recommendations"]
    assert [r["item_id"] for r in data["recommendations"]] == [r["item_id"] for r in expected]
    # the flag repeated is the same two likes (it kept only the last one)
    repeated = cli_in_process(
        "recommend-new", RUN, "--like", liked[0], "--like", liked[1], "--k", "5", "--json", workspace=served_root
    )
    assert json.loads(repeated.stdout.strip().splitlines()[-1])["like"] == liked
    query = client.post("/recommend-new", json={"query": "a book about gardening", "k": 4})
    assert query.status_code == 200 and len(query.json()["recommendations"]) == 4
    both = client.post("/recommend-new", json={"query": "headphones", "like": liked, "k": 3, "blend": 0.3})
    assert both.status_code == 200 and len(both.json()["recommendations"]) == 3
    # a known user blends with a query; the user's own items are not recommended back
    blended = client.post("/recommend-new", json={"query": "headphones", "user": ids["user"], "k": 5})
    assert blended.status_code == 200 and len(blended.json()["recommendations"]) == 5


def test_recommend_new_explains_each_item_by_the_liked_items(client, ids, served_root):
    liked = ids["items"][:2]
    data = client.post("/recommend-new", json={"like": liked, "k": 3, "explain": True}).json()
    plain = client.post("/recommend-new", json={"like": liked, "k": 3}).json()
    assert [r["item_id"] for r in data["recommendations"]] == [r["item_id"] for r in plain["recommendations"]]
    for row in data["recommendations"]:
        explanation = row["explanation"]
        assert explanation["item_id"] == row["item_id"] and explanation["sentence"]
        assert abs(explanation["score"] - row["score"]) < 1e-4  # the explanation is of the score listed
        assert {h["item_id"] for h in explanation["history"]} <= set(liked)
        assert abs(sum(m["share"] for m in explanation["modalities"]) - row["score"]) < 1e-4
    assert any(r["explanation"]["history"] for r in data["recommendations"])
    refused = client.post("/recommend-new", json={"query": "headphones", "explain": True})
    assert refused.status_code == 422 and "like" in refused.json()["detail"]
    done = cli_in_process(
        "recommend-new", RUN, "--like", *liked, "--k", "3", "--explain", "--json", workspace=served_root
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout.strip().splitlines()[-1])["recommendations"]
    assert [r["explanation"]["sentence"] for r in rows] == [
        r["explanation"]["sentence"] for r in data["recommendations"]
    ]
    done = cli_in_process("recommend-new", RUN, "--query", "lamp", "--explain", workspace=served_root)
    assert done.returncode != 0 and "--like items only" in done.stderr


def test_a_user_the_new_user_path_would_ignore_is_refused(client, ids, served_root):
    """With likes (the likes are the whole history) or without a query, a user would be silently dropped."""
    for body in ({"like": ids["items"][:1], "user": ids["user"]}, {"user": ids["user"], "query": "  "}):
        response = client.post("/recommend-new", json=body)
        assert response.status_code == 422, body
    detail = client.post("/recommend-new", json={"like": ids["items"][:1], "user": ids["user"]}).json()["detail"]
    assert "liked items" in detail
    done = cli_in_process(
        "recommend-new", RUN, "--like", ids["items"][0], "--user", ids["user"], "--json", workspace=served_root
    )
    assert done.returncode != 0 and "--user" in done.stderr and "liked items" in done.stderr


def test_explain_one_pair(client, ids):
    data = client.get("/explain", params={"user": ids["user"], "item": ids["item"]}).json()
    explanation = data["explanation"]
    assert data["run_id"] == RUN and explanation["item_id"] == ids["item"] and explanation["sentence"]
    assert explanation["modalities"] and explanation["model"] == "fusion"


@pytest.mark.parametrize(
    "path, params, named",
    [
        ("/recommend", {"user": "nobody-42"}, "nobody-42"),
        ("/explain", {"user": "nobody-42", "item": "D0001"}, "nobody-42"),
        ("/similar", {"item": "no-such-item"}, "no-such-item"),
    ],
)
def test_unknown_ids_are_404_naming_them(client, path, params, named):
    response = client.get(path, params=params)
    assert response.status_code == 404 and named in response.json()["detail"]


def test_unknown_items_in_explain_and_recommend_new_are_404(client, ids):
    response = client.get("/explain", params={"user": ids["user"], "item": "no-such-item"})
    assert response.status_code == 404 and "no-such-item" in response.json()["detail"]
    response = client.post("/recommend-new", json={"like": [ids["item"], "gone-7"]})
    assert response.status_code == 404 and "gone-7" in response.json()["detail"]


@pytest.mark.parametrize(
    "params",
    [
        {"k": 0},
        {"k": -3},
        {"k": 1001},
        {"k": "ten"},
        {"diversity": 1.5},
        {"diversity": -0.1},
        {"diversity": "nan"},
        {"explain": "perhaps"},
    ],
)
def test_bad_parameters_are_422(client, ids, params):
    response = client.get("/recommend", params={"user": ids["user"], **params})
    assert response.status_code == 422 and response.json()["detail"]


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"like": []},
        {"query": "   "},
        {"like": ["D0001"], "k": 0},
        {"query": "x", "blend": 2},
        {"likes": ["D0001"]},
        "not an object",
    ],
)
def test_bad_new_user_requests_are_422(client, body):
    response = client.post("/recommend-new", json=body)
    assert response.status_code == 422 and response.json()["detail"]


def test_missing_parameters_and_bad_json_are_4xx(client):
    assert client.get("/recommend").status_code == 422
    assert client.get("/similar", params={"item": ""}).status_code == 422
    response = client.post("/recommend-new", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422


def test_concurrent_requests_all_succeed_alike(client, ids):
    users = [ids["user"], str(client.app.state.served.model.user_ids[1])]

    def call(n: int):
        response = client.get("/recommend", params={"user": users[n % 2], "k": 10, "explain": n % 4 == 0})
        return n, response.status_code, [r["item_id"] for r in response.json()["recommendations"]]

    with ThreadPoolExecutor(16) as pool:
        results = list(pool.map(call, range(16)))
    assert all(status == 200 for _, status, _ in results)
    for parity in (0, 1):
        lists = {tuple(items) for n, _, items in results if n % 2 == parity}
        assert len(lists) == 1 and len(next(iter(lists))) == 10


def test_openapi_schema_is_served_locally(client):
    schema = client.get("/openapi.json").json()
    assert {"/health", "/recommend", "/similar", "/recommend-new", "/explain"} <= set(schema["paths"])
    assert "NewUserRequest" in schema["components"]["schemas"]


def test_create_app_refuses_a_missing_run_and_a_path(served_root):
    from recsys.cli import CommandError
    from recsys.serve import create_app
    from recsys.workspace import InvalidName

    with pytest.raises(CommandError, match=rf"no run 'nope' .* \(recent: {RUN}"):  # as recommend names them
        create_app(served_root, "nope")
    with pytest.raises(InvalidName):
        create_app(served_root, "../ws")


# ----------------------------------------------------------------------------- the command


@pytest.mark.slow  # three interpreters start (about 20 s each on 2 busy cores)
def test_serve_refuses_a_damaged_or_missing_run_with_exit_1(served_root, tmp_path):
    workspace = tmp_path / "ws"
    shutil.copytree(served_root, workspace)
    (workspace / "runs" / RUN / "model" / "weights.safetensors").write_bytes(b"\x00garbage")
    done = cli("serve", RUN, "--port", str(free_port()), "--json", workspace=workspace)
    assert done.returncode == 1
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert not result["ok"] and "weights.safetensors" in result["error"]
    assert "Traceback" not in done.stderr and "error:" in done.stderr
    missing = cli("serve", "no-such-run", "--json", workspace=workspace)
    assert missing.returncode == 1 and "no-such-run" in json.loads(missing.stdout.strip().splitlines()[-1])["error"]
    path = cli("serve", "../elsewhere", "--json", workspace=workspace)
    assert path.returncode == 1 and "Traceback" not in path.stderr


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def fetch(url: str, body: dict | None = None) -> tuple[int, dict]:
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json"} if data else {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


@pytest.mark.slow  # a real server process
def test_serve_end_to_end_and_stops_on_sigterm(served_root, ids):
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    process = subprocess.Popen(
        [sys.executable, "-m", "recsys", "serve", RUN, "--port", str(port), "--json", "--workspace", str(served_root)],
        cwd=REPO_ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        deadline = time.monotonic() + 120
        while True:
            assert process.poll() is None, process.communicate()
            try:
                status, health = fetch(base + "/health")
                break
            except (urllib.error.URLError, ConnectionError):
                assert time.monotonic() < deadline, "the server did not come up in 2 minutes"
                time.sleep(0.2)
        assert status == 200 and health["run_id"] == RUN
        query = urllib.parse.urlencode({"user": ids["user"], "k": 5})
        status, data = fetch(f"{base}/recommend?{query}")
        assert status == 200 and len(data["recommendations"]) == 5
        status, data = fetch(f"{base}/recommend?{query}&explain=true")
        assert status == 200 and data["recommendations"][0]["explanation"]["sentence"]
        status, data = fetch(f"{base}/similar?item={ids['item']}&k=3")
        assert status == 200 and len(data["similar"]) == 3
        status, data = fetch(f"{base}/recommend-new", {"like": [ids["item"]], "k": 4})
        assert status == 200 and len(data["recommendations"]) == 4
        status, data = fetch(f"{base}/explain?user={ids['user']}&item={ids['item']}")
        assert status == 200 and data["explanation"]["item_id"] == ids["item"]
        status, data = fetch(f"{base}/recommend?user=ghost-user")
        assert status == 404 and "ghost-user" in data["detail"]
        status, data = fetch(f"{base}/recommend?{query}&k=0")
        assert status == 422 and data["detail"]
        status, _ = fetch(base + "/openapi.json")
        assert status == 200
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            stdout, stderr = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            raise
    assert process.returncode == 0, stderr
    assert f"http://127.0.0.1:{port}" in stdout
    result = json.loads(stdout.strip().splitlines()[-1])
    assert result["ok"] and result["stopped_by"] == "SIGTERM"


def test_a_dataset_that_cannot_be_read_now_leaves_the_served_import_as_it_was(served_root, monkeypatch):
    """The API looks for a later import of its dataset; a half-written or damaged one must not take it down:
    it goes on serving the import it has."""
    from recsys.serve import ServedRun
    from recsys.workspace import Workspace

    served = ServedRun(Workspace(served_root), RUN)
    served.follow_every_s = 0.0
    before = (served.bundle, served.in_catalogue, served.dataset_imported_at)

    def damaged(name):
        raise OSError(f"datasets/{name}/items.parquet is damaged")

    monkeypatch.setattr(served.workspace, "dataset_imported_at", lambda name: "2031-01-01T00:00:00Z")
    monkeypatch.setattr(served.workspace, "load_dataset", damaged)
    served.follow_dataset()
    assert (served.bundle, served.in_catalogue, served.dataset_imported_at) == before
    served.follow_every_s = 3600.0  # not due: no look at all
    monkeypatch.setattr(served.workspace, "dataset_imported_at", lambda name: pytest.fail("looked too soon"))
    served.follow_dataset()


def test_explain_says_where_the_item_stands_for_the_user(client, ids, served_root):
    """`explain` of any item said "Recommended mainly for …" of the 766th of 783: it now gives the item's place
    among what a list for the user could hold, the same order `recommend` lists."""
    user = ids["user"]
    listed = [r["item_id"] for r in client.get("/recommend", params={"user": user, "k": 3}).json()["recommendations"]]

    def explained(item: str) -> dict:
        done = cli_in_process("explain", RUN, "--user", user, "--item", item, "--json", workspace=served_root)
        assert done.returncode == 0, done.stderr
        return json.loads(done.stdout.strip().splitlines()[-1])["explanation"]

    first = explained(listed[0])
    assert first["rank"] == 1 and first["candidates"] > 3
    assert "it ranks 1st of the" in " ".join(first["notes"])
    # in the list's order (one per product may have set a variant aside between them)
    assert 1 < explained(listed[1])["rank"] < explained(listed[2])["rank"]
    model = client.app.state.served.model
    owned = str(model.item_ids[model.seen[model.user_index(user)].indices[0]])
    mine = explained(owned)
    assert mine["rank"] is None and any("already has this item" in note for note in mine["notes"])
