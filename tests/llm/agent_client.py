"""An agent's LLM calls through the real `openai` and `anthropic` SDKs, against the local
provider server: prints one JSON line per call with what the client itself sent and got, for
the test to compare with the sensor's records.

Usage: agent_client.py BASE_URL CA_FILE SCENARIO (all | one | big | cut | h2 | h2-big | close)

Scenario h2-big sends a 1 MiB prompt over HTTP/2, then a small one on the same connection.

Scenario close reads two events of a stream and closes its connection while the server still
holds the rest, then makes a call to a second server (AGENT_CLIENT_SECOND, its base URL) on a
new connection, then waits for a line on stdin before it exits.

Scenario h2 talks HTTP/2 (httpx with h2, ALPN) to tests/llm/h2_server.js: a tool call, a
stream, and a stream the server resets.
"""
import json
import os
import sys
import time

import anthropic
import openai

OPENAI_KEY = "sk-proj-T3stK3yAbCdEfGhIjKlMnOpQrStUvWxYz0123456789"
ANTHROPIC_KEY = "sk-ant-api03-T3stK3yAbCdEfGhIjKlMnOpQrStUvWxYz0123456789-AbCdEfGh"
SECRET_IN_PROMPT = "ghp_16C7e42F292c6912E7710c838347Ae178B4a"
TOOLS_OPENAI = [{"type": "function", "function": {"name": "get_weather", "description": "Weather of a city", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}]
TOOLS_ANTHROPIC = [{"name": "get_weather", "description": "Weather of a city", "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]


def log(**fields):
    print(json.dumps({"pid": os.getpid(), **fields}), flush=True)


def http2(base, ca):
    oa = openai.OpenAI(base_url=base + "/v1", api_key=OPENAI_KEY, max_retries=0,
                       http_client=openai.DefaultHttpxClient(verify=ca, http2=True))
    user = f"Weather in Lyon over HTTP/2? (my token is {SECRET_IN_PROMPT})"
    r = oa.chat.completions.with_raw_response.create(model="gpt-h2-tools", messages=[{"role": "user", "content": user}], tools=TOOLS_OPENAI)
    version = r.http_response.http_version
    r = r.parse()
    call = r.choices[0].message.tool_calls[0]
    log(call="openai-h2", http_version=version, model=r.model, tool=call.function.name, arguments=call.function.arguments, user=user,
        input_tokens=r.usage.prompt_tokens, output_tokens=r.usage.completion_tokens)
    text = "".join(c.choices[0].delta.content or "" for c in oa.chat.completions.create(model="gpt-h2-stream", messages=[{"role": "user", "content": "stream please"}], stream=True) if c.choices)
    log(call="openai-h2-stream", text=text)
    text = ""
    try:
        for c in oa.chat.completions.create(model="reset-stream", messages=[{"role": "user", "content": "stream then reset"}], stream=True):
            if c.choices:
                text += c.choices[0].delta.content or ""
        error = None
    except Exception as e:  # the reset surfaces as a protocol error
        error = type(e).__name__
    log(call="openai-h2-reset", text=text, error=error)


def http2_big(base, ca):
    oa = openai.OpenAI(base_url=base + "/v1", api_key=OPENAI_KEY, max_retries=0,
                       http_client=openai.DefaultHttpxClient(verify=ca, http2=True))
    big = "y" * (1 << 20)
    r = oa.chat.completions.with_raw_response.create(model="gpt-h2-big", messages=[{"role": "user", "content": big}])
    version = r.http_response.http_version
    log(call="openai-h2-big", http_version=version, text=r.parse().choices[0].message.content)
    r = oa.chat.completions.create(model="gpt-h2-after-big", messages=[{"role": "user", "content": "and a small one"}])
    log(call="openai-h2-after-big", text=r.choices[0].message.content)


def close_mid_stream(base, ca):
    oa = openai.OpenAI(base_url=base + "/v1", api_key=OPENAI_KEY, max_retries=0,
                       http_client=openai.DefaultHttpxClient(verify=ca))
    stream = oa.chat.completions.create(model="slow-stream", messages=[{"role": "user", "content": "stream slowly"}], stream=True)
    text = ""
    for c in stream:
        if c.choices:
            text += c.choices[0].delta.content or ""
        if text == "Hello from":
            break
    stream.close()
    log(call="openai-closed", text=text)
    second = openai.OpenAI(base_url=os.environ["AGENT_CLIENT_SECOND"] + "/v1", api_key=OPENAI_KEY, max_retries=0,
                           http_client=openai.DefaultHttpxClient(verify=ca))
    r = second.chat.completions.create(model="after-close", messages=[{"role": "user", "content": "again"}])
    log(call="openai-after-close", text=r.choices[0].message.content)
    # Alive until the test has looked at the records: an exchange ended only by the process's
    # exit (or by going quiet) would not be there yet.
    sys.stdin.readline()


def main():
    base, ca, scenario = sys.argv[1:4]
    # The TLS library is mapped by now (imported above): time for the sensor to find it.
    time.sleep(float(os.environ.get("AGENT_CLIENT_WAIT", "0")))
    if scenario == "h2":
        http2(base, ca)
        return
    if scenario == "h2-big":
        http2_big(base, ca)
        return
    if scenario == "close":
        close_mid_stream(base, ca)
        return
    oa = openai.OpenAI(base_url=base + "/v1", api_key=OPENAI_KEY, max_retries=0,
                       http_client=openai.DefaultHttpxClient(verify=ca))
    an = anthropic.Anthropic(base_url=base, api_key=ANTHROPIC_KEY, max_retries=0,
                             http_client=anthropic.DefaultHttpxClient(verify=ca))
    system = "You are a careful assistant."
    user = f"What is the weather in Paris? (my token is {SECRET_IN_PROMPT})"
    if scenario in ("all", "one"):
        r = oa.chat.completions.create(model="gpt-test-1", messages=[{"role": "system", "content": system}, {"role": "user", "content": user}], tools=TOOLS_OPENAI)
        call = r.choices[0].message.tool_calls[0]
        log(call="openai", model=r.model, tool=call.function.name, arguments=call.function.arguments, system=system, user=user,
            input_tokens=r.usage.prompt_tokens, output_tokens=r.usage.completion_tokens)
    if scenario != "all":
        if scenario == "big":
            big = "x" * (1 << 20)
            r = oa.chat.completions.create(model="gpt-test-big", messages=[{"role": "user", "content": big}])
            log(call="openai-big", text=r.choices[0].message.content)
        if scenario == "cut":
            text = "".join(c.choices[0].delta.content or "" for c in oa.chat.completions.create(model="cut-stream", messages=[{"role": "user", "content": "stream please"}], stream=True) if c.choices)
            log(call="openai-cut", text=text)
        return
    text = "".join(c.choices[0].delta.content or "" for c in oa.chat.completions.create(model="gpt-test-stream", messages=[{"role": "user", "content": "stream please"}], stream=True) if c.choices)
    log(call="openai-stream", text=text)
    m = an.messages.create(model="claude-test-1", max_tokens=64, system=system, messages=[{"role": "user", "content": user}], tools=TOOLS_ANTHROPIC)
    tool = next(b for b in m.content if b.type == "tool_use")
    log(call="anthropic", model=m.model, text=m.content[0].text, tool=tool.name, arguments=json.dumps(tool.input), tool_id=tool.id,
        input_tokens=m.usage.input_tokens, output_tokens=m.usage.output_tokens)
    with an.messages.stream(model="claude-test-stream", max_tokens=64, messages=[{"role": "user", "content": "stream please"}]) as s:
        text = "".join(s.text_stream)
    log(call="anthropic-stream", text=text)


if __name__ == "__main__":
    main()
