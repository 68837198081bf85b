"""Minimal client with the official Python SDK (mcp 2.x). Usage: python client.py URL MODE [KEY]
MODE: legacy | auto | 2026-07-28"""
import asyncio, sys
import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client

async def main(url: str, mode: str, key: str | None):
    http = httpx2.AsyncClient(headers={"Authorization": f"Bearer {key}"} if key else {})
    async with Client(streamable_http_client(url, http_client=http), mode=mode) as c:
        tools = await c.list_tools()
        print("tools:", [t.name for t in tools.tools])
        r = await c.call_tool("add", {"a": 2, "b": 3})
        print("add:", r.content[0].text, "isError:", r.is_error)
        print("resources:", [str(x.uri) for x in (await c.list_resources()).resources])
        print("prompts:", [p.name for p in (await c.list_prompts()).prompts])

asyncio.run(main(sys.argv[1], sys.argv[2], sys.argv[3] if len(sys.argv) > 3 else None))
