"""A scripted stand-in for an LLM: valid answers to the requests of RecWorld's LLM brain and
LLM recommenders, chosen by the request's schema name (for ``FakeLLMServer``: unit tests and
the simulator-efficiency benchmark, where the answers' content does not matter)."""

import hashlib
import json

from recworld.simulator.testing.fakellm import Reply


def _h(body: dict) -> int:
    return int(hashlib.sha256(json.dumps(body["messages"], sort_keys=True).encode()).hexdigest()[:8], 16)


def schema_name(body: dict) -> str:
    rf = body.get("response_format") or {}
    return (rf.get("json_schema") or {}).get("name", "")


def answer(body: dict, n: int) -> Reply:
    """A valid answer for each kind of request, varied by a hash of the prompt."""
    name, h = schema_name(body), _h(body)
    if name == "ActivityAnswer":
        kind = ["browse", "browse", "search", "chat", "post", "browse"][h % 6]
        return Reply(json.dumps({"activity": kind, "query": "comedy" if kind == "search" else ""}))
    if name.startswith("PageAnswer"):
        n = int(name[len("PageAnswer"):].split("x")[0])         # items on the page
        watch = [{"item": 1 + h % min(3, n), "rating": 1 + h % 5, "feeling": "fine"}] if h % 3 else []
        nxt = ["next", "leave", "search"][h % 3]
        return Reply(json.dumps({"watch": watch, "next": nxt, "query": "drama" if nxt == "search" else ""}))
    if name == "ChatTurn":
        return Reply(json.dumps({"message": "Have you seen anything good?", "mention": ""}))
    if name == "PostText":
        return Reply(json.dumps({"text": "A film worth your evening."}))
    if name == "Insight":
        return Reply(json.dumps({"insight": "I enjoy light films."}))
    if name == "ToolAction":
        turn = sum(m["role"] == "assistant" for m in body["messages"])
        step = [("retrieve", "genre", "Comedy", 8), ("retrieve", "year", "1990s", 8), ("retrieve", "similar", "", 8),
                ("rerank", "genre", "funny", 6), ("finish", "none", "", 1)][min(turn, 4)]
        return Reply(json.dumps({"thought": "step", "action": step[0], "attribute": step[1], "value": step[2],
                                 "k": step[3]}))
    if name == "Ranking":             # a list answer: the names it may hold, in reverse order
        spec = body["response_format"]["json_schema"]["schema"]["properties"]["ranking"]
        return Reply(json.dumps({"ranking": spec["items"]["enum"][::-1][:spec.get("maxItems")]}))
    if not name:                      # a ranking request: list the catalog's names in reverse order
        text = body["messages"][-1]["content"]
        names = [json.loads(line)["name"] for line in text.splitlines() if line.startswith("{")]
        return Reply("\n".join(f"{k}. {x}" for k, x in enumerate(reversed(names), 1)))
    if name == "Reaction":
        return Reply(json.dumps({"interested": bool(h % 2), "repost": False}))
    return Reply(json.dumps({"answer": "ok"}))
