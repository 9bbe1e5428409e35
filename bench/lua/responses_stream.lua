-- OpenAI Responses (/v1/responses), streamed (semantic events until response.completed), store off.
-- env: MODEL (default mock-stream), API_KEY (optional)
dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/report.lua")
local model = os.getenv("MODEL") or "mock-stream"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Accept"] = "text/event-stream"
if os.getenv("API_KEY") and os.getenv("API_KEY") ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("API_KEY")
end
wrk.body = '{"model":"' .. model .. '","instructions":"You are a helpful assistant.",' ..
  '"input":"Say hello in one short sentence.","max_output_tokens":64,"temperature":0,' ..
  '"stream":true,"store":false}'
done = bench_done
