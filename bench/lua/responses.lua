-- OpenAI Responses (/v1/responses), not streamed, store off.  env: MODEL (default mock-chat), API_KEY
dofile((os.getenv("BENCH_LUA_DIR") or ".") .. "/report.lua")
local model = os.getenv("MODEL") or "mock-chat"
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
if os.getenv("API_KEY") and os.getenv("API_KEY") ~= "" then
  wrk.headers["Authorization"] = "Bearer " .. os.getenv("API_KEY")
end
wrk.body = '{"model":"' .. model .. '","instructions":"You are a helpful assistant.",' ..
  '"input":"Say hello in one short sentence.","max_output_tokens":64,"temperature":0,' ..
  '"store":false}'
done = bench_done
