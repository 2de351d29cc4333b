"""The X-Fields response mask of the original flask-restplus API, on POST and GET /api/events/."""

import httpx
import pytest

from tests.support import valid_event

ALL_KEYS = ["component", "data", "email", "environment", "message", "id", "created_at"]


async def test_post_with_x_fields_id_returns_only_the_id(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/events/", json=valid_event(), headers={"X-Fields": "id"})
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["id"]
    stored = (await client.get(f"/api/events/{body['id']}")).json()
    assert stored["message"] == "order failed"


async def test_post_with_x_fields_list_returns_those_keys(client: httpx.AsyncClient) -> None:
    response = await client.post(
        "/api/events/", json=valid_event(), headers={"X-Fields": "id, created_at,data"}
    )
    assert response.status_code == 201
    body = response.json()
    assert set(body) == {"id", "created_at", "data"}
    assert body["data"] == {"age": 20}
    assert isinstance(body["created_at"], str)


async def test_post_with_x_fields_star_returns_the_whole_event(client: httpx.AsyncClient) -> None:
    response = await client.post("/api/events/", json=valid_event(), headers={"X-Fields": "*"})
    assert list(response.json()) == ALL_KEYS


async def test_get_with_x_fields_on_events_returns_only_those_keys(client: httpx.AsyncClient) -> None:
    created = [
        (await client.post("/api/events/", json=valid_event(message=f"m{n}"))).json() for n in range(3)
    ]
    response = await client.get("/api/events/", headers={"X-Fields": "events{id,created_at}"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"events": [{"id": e["id"], "created_at": e["created_at"]} for e in created]}


async def test_get_with_x_fields_applies_together_with_filters(client: httpx.AsyncClient) -> None:
    await client.post("/api/events/", json=valid_event(component="a"))
    wanted = (await client.post("/api/events/", json=valid_event(component="b"))).json()
    response = await client.get("/api/events/", params={"component": "b"}, headers={"X-Fields": "events{id}"})
    assert response.json() == {"events": [{"id": wanted["id"]}]}


async def test_get_with_x_fields_keeps_data_whole(client: httpx.AsyncClient) -> None:
    data = {"nested": {"n": 2**70, "list": [1, "two"]}}
    await client.post("/api/events/", json=valid_event(data=data))
    response = await client.get("/api/events/", headers={"X-Fields": "events{data}"})
    assert response.json() == {"events": [{"data": data}]}


@pytest.mark.parametrize(
    ("method", "mask", "expected_keys"),
    [
        ("POST", "id,nope", ["id"]),
        ("POST", "nope", []),
        ("GET", "events{id,nope}", ["id"]),
        ("GET", "events{nope}", []),
    ],
)
async def test_unknown_x_fields_names_are_simply_absent(
    client: httpx.AsyncClient, method: str, mask: str, expected_keys: list[str]
) -> None:
    posted = await client.post(
        "/api/events/", json=valid_event(), headers={"X-Fields": mask} if method == "POST" else {}
    )
    assert posted.status_code == 201
    if method == "POST":
        assert list(posted.json()) == expected_keys
        return
    response = await client.get("/api/events/", headers={"X-Fields": mask})
    assert response.status_code == 200
    [event] = response.json()["events"]
    assert list(event) == expected_keys


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        # flask-restplus's own texts, "coma" included: the original answered these.
        ("events{id", "Mask parse error: Missing closing bracket"),
        ("{events{id}", "Mask parse error: Missing closing bracket"),
        ("events{id}}", "Mask parse error: Unexpected closing bracket"),
        ("id}", "Mask parse error: Unexpected closing bracket"),
        (",id", "Mask parse error: Unexpected coma"),
        ("id,,created_at", "Mask parse error: Unexpected coma"),
        ("events{,id}", "Mask parse error: Unexpected coma"),
        ("events{{id}}", "Mask parse error: Unexpected opening bracket"),
        ("{{id}}", "Mask parse error: Unexpected opening bracket"),
    ],
)
@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_malformed_x_fields_is_a_400_json_message(
    client: httpx.AsyncClient, method: str, mask: str, message: str
) -> None:
    kwargs = {"json": valid_event()} if method == "POST" else {}
    response = await client.request(method, "/api/events/", headers={"X-Fields": mask}, **kwargs)
    assert response.status_code == 400, (mask, response.text)
    assert response.headers["content-type"] == "application/json"
    assert response.json() == {"message": message}
    if method == "POST":
        # Refused before anything is written.
        assert (await client.get("/api/events/")).json() == {"events": []}


async def test_x_fields_is_honoured_on_the_slashless_routes(client: httpx.AsyncClient) -> None:
    posted = await client.post("/api/events", json=valid_event(), headers={"X-Fields": "id"})
    assert list(posted.json()) == ["id"]
    listed = await client.get("/api/events", headers={"X-Fields": "events{id}"})
    assert listed.json() == {"events": [posted.json()]}


@pytest.mark.parametrize(
    ("mask", "expected_keys"),
    [
        # flask-restplus: outer braces are optional, and characters outside its grammar are ignored.
        ("{id,created_at}", ["id", "created_at"]),
        ("id created_at", ["id", "created_at"]),
        ("id;created_at", ["id", "created_at"]),
        (" id ,\tcreated_at ", ["id", "created_at"]),
        ("id,", ["id"]),
    ],
)
async def test_x_fields_follows_the_flask_restplus_grammar_on_post(
    client: httpx.AsyncClient, mask: str, expected_keys: list[str]
) -> None:
    response = await client.post("/api/events/", json=valid_event(), headers={"X-Fields": mask})
    assert response.status_code == 201, response.text
    assert list(response.json()) == expected_keys


@pytest.mark.parametrize("mask", ["{events{id}}", "events{id}", " events { id } ", "events{id,}"])
async def test_x_fields_follows_the_flask_restplus_grammar_on_get(
    client: httpx.AsyncClient, mask: str
) -> None:
    created = (await client.post("/api/events/", json=valid_event())).json()
    response = await client.get("/api/events/", headers={"X-Fields": mask})
    assert response.status_code == 200, response.text
    assert response.json() == {"events": [{"id": created["id"]}]}


async def test_a_masked_answer_keeps_every_digit_of_big_integers_in_data(client: httpx.AsyncClient) -> None:
    """Masking decodes `data`: with the same exact rule as GraphQL, not a float parser."""
    big = 123456789012345678901234567890
    fields = '"component": "c", "environment": "e", "email": "a@b.co", "message": "m"'
    body = f'{{{fields}, "data": {{"n": {big}}}}}'
    posted = await client.post(
        "/api/events/", content=body, headers={"Content-Type": "application/json", "X-Fields": "data"}
    )
    assert posted.status_code == 201
    assert str(big) in posted.text
    listed = await client.get("/api/events/", headers={"X-Fields": "events{data}"})
    assert f'"n":{big}' in listed.text.replace(" ", "")
