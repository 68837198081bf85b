"""Refusals: authentication, unknown models, malformed bodies, revoked keys, disabled tenants."""

from __future__ import annotations

import httpx
import openai
import pytest

from conftest import MODEL, Admin, GatewayProc

HI = [{"role": "user", "content": "hi"}]
ERROR_FIELDS = {"message", "type", "param", "code"}


def assert_openai_error(response: httpx.Response, status: int, code: str, kind: str | None = None) -> dict:
    """Checks the OpenAI error shape `{"error":{"message","type","param","code"}}`."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == ERROR_FIELDS, error
    assert error["code"] == code, error
    assert isinstance(error["message"], str) and error["message"], error
    if kind is not None:
        assert error["type"] == kind, error
    return error


# Refusals made before the gateway reads the request body (401, 403 tenant_disabled) end
# the connection with `Connection: close` (test_keepalive.py checks that); each is made on
# a client of its own so these tests stay independent of connection reuse.


def test_unknown_key_is_401(make_client):
    with pytest.raises(openai.AuthenticationError) as exc:
        make_client("obl_doesnotexist").chat.completions.create(model=MODEL, messages=HI, max_tokens=1)
    assert exc.value.status_code == 401
    assert_openai_error(exc.value.response, 401, "invalid_api_key")
    assert exc.value.code == "invalid_api_key"
    assert "x-request-id" in exc.value.response.headers
    # Also on the model list.
    with pytest.raises(openai.AuthenticationError) as exc:
        make_client("obl_doesnotexist").models.list()
    assert_openai_error(exc.value.response, 401, "invalid_api_key")


def test_missing_authorization_is_401(gateway: GatewayProc):
    r = httpx.post(
        f"{gateway.data_url}/v1/chat/completions", json={"model": MODEL, "messages": HI, "max_tokens": 1}
    )
    assert_openai_error(r, 401, "missing_api_key")
    assert "x-request-id" in r.headers
    r = httpx.get(f"{gateway.data_url}/v1/models")
    assert_openai_error(r, 401, "missing_api_key")


def test_unknown_model_is_404(client: openai.OpenAI):
    with pytest.raises(openai.NotFoundError) as exc:
        client.chat.completions.create(model="no-such-model", messages=HI, max_tokens=1)
    assert exc.value.status_code == 404
    error = assert_openai_error(exc.value.response, 404, "model_not_found", "invalid_request_error")
    assert error["param"] == "model"
    assert "no-such-model" in error["message"]


def test_malformed_json_is_400(data_http: httpx.Client, api_key: dict):
    r = data_http.post(
        "/v1/chat/completions",
        content=b"{not json",
        headers={"Authorization": f"Bearer {api_key['secret']}", "Content-Type": "application/json"},
    )
    assert_openai_error(r, 400, "invalid_json", "invalid_request_error")


def test_missing_model_field_is_400(client: openai.OpenAI):
    with pytest.raises(openai.BadRequestError) as exc:
        client.chat.completions.create(model="", messages=HI, max_tokens=1)
    error = assert_openai_error(exc.value.response, 400, "invalid_model", "invalid_request_error")
    assert error["param"] == "model"


def test_revoked_key_is_refused_at_once(admin: Admin, make_client):
    key = admin.create_key()
    second = make_client(key["secret"])
    ok = second.chat.completions.create(model=MODEL, messages=HI, max_tokens=2)
    assert ok.usage.completion_tokens == 2  # the key is cached as valid now

    revoked = admin.call("POST", f"/api/v1/keys/{key['id']}/revoke", expect=200)
    assert revoked["id"] == key["id"]
    assert revoked["revoked_at"] is not None
    assert "secret" not in revoked

    # The admin API and the data plane share a process: the cache entry is dropped on revoke.
    with pytest.raises(openai.AuthenticationError) as exc:
        second.chat.completions.create(model=MODEL, messages=HI, max_tokens=2)
    assert_openai_error(exc.value.response, 401, "invalid_api_key")


def test_disabled_tenant_is_403(admin: Admin, client: openai.OpenAI, api_key: dict, make_client):
    ok = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=1)
    assert ok.usage.completion_tokens == 1  # the tenant is cached as enabled now
    try:
        assert admin.patch_tenant({"disabled": True})["disabled"] is True
        with pytest.raises(openai.PermissionDeniedError) as exc:
            make_client(api_key["secret"]).chat.completions.create(model=MODEL, messages=HI, max_tokens=1)
        assert_openai_error(exc.value.response, 403, "tenant_disabled", "permission_error")
        with pytest.raises(openai.PermissionDeniedError) as exc:
            make_client(api_key["secret"]).models.list()
        assert_openai_error(exc.value.response, 403, "tenant_disabled", "permission_error")
    finally:
        assert admin.patch_tenant({"disabled": False})["disabled"] is False
    ok = client.chat.completions.create(model=MODEL, messages=HI, max_tokens=1)
    assert ok.usage.completion_tokens == 1
