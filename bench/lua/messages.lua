-- Anthropic Messages (/v1/messages), not streamed.  env: MODEL (default mock-chat), API_KEY (optional)
dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/report.lua")
local model = os.getenv("MODEL") or "mock-chat"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["anthropic-version"] = "2023-06-01"
if os.getenv("API_KEY") and os.getenv("API_KEY") ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("API_KEY")
end
wrk.body = '{"model":"' .. model .. '","system":"You are a helpful assistant.",' ..
  '"messages":[{"role":"user","content":"Say hello in one short sentence."}],' ..
  '"max_tokens":64,"temperature":0}'
done = bench_done
