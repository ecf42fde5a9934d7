-- wrk script of the validate benchmark: POST /v1/validate with a different ticket code per
-- request, read from a file of codes (one per line).
--
--   wrk -t T -c C -d 10s -s benchmarks/validate.lua URL -- CODES OFFSET T MODE TOKEN PATH
--
-- Thread t of T sends the codes at lines OFFSET+t, OFFSET+t+T, OFFSET+t+2T... (0-based).
-- MODE "fresh": a code is never sent twice; a thread that runs out stops (what it sends then
--   is a GET /health, counted as "overrun", so no code is ever reused).
-- MODE "cycle": the thread starts again at its first code (for codes that are used already).
-- done() prints one line "WRK_JSON {...}" with latency percentiles (µs), the status split
-- and, per thread, how many codes it sent.

local threads = {}
local next_tid = 0

function setup(thread)
  thread:set("tid", next_tid)
  next_tid = next_tid + 1
  table.insert(threads, thread)
end

function init(args)
  local path, offset, nthreads = args[1], tonumber(args[2]), tonumber(args[3])
  cycle = args[4] == "cycle"
  wrk.method = "POST"
  wrk.path = args[6] or "/v1/validate"
  wrk.headers["Content-Type"] = "application/json"
  if args[5] and args[5] ~= "" then
    wrk.headers["Authorization"] = "Bearer " .. args[5]
  end
  bodies = {}
  local i = 0
  for line in io.lines(path) do
    if i >= offset and (i - offset) % nthreads == tid and #line > 0 then
      bodies[#bodies + 1] = '{"code":"' .. line .. '","direction":"entry"}'
    end
    i = i + 1
  end
  position = 0
  sent = 0
  overrun = 0
  statuses = {}
end

function request()
  if position >= #bodies then
    if cycle and #bodies > 0 then
      position = 0
    else
      overrun = overrun + 1
      wrk.thread:stop()
      return wrk.format("GET", "/health", {}, nil)
    end
  end
  position = position + 1
  sent = sent + 1
  return wrk.format(nil, nil, nil, bodies[position])
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local parts = {}
  for _, thread in ipairs(threads) do
    local split = {}
    for status, count in pairs(thread:get("statuses")) do
      split[#split + 1] = string.format('"%d":%d', status, count)
    end
    parts[#parts + 1] = string.format(
      '{"tid":%d,"sent":%d,"overrun":%d,"statuses":{%s}}',
      thread:get("tid"), thread:get("sent"), thread:get("overrun"), table.concat(split, ",")
    )
  end
  local e = summary.errors
  io.write(string.format(
    'WRK_JSON {"duration_us":%d,"requests":%d,"bytes":%d,' ..
      '"errors":{"connect":%d,"read":%d,"write":%d,"status":%d,"timeout":%d},' ..
      '"latency_us":{"p50":%d,"p90":%d,"p99":%d,"mean":%.1f,"max":%d},"threads":[%s]}\n',
    summary.duration, summary.requests, summary.bytes,
    e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.mean,
    latency.max, table.concat(parts, ",")
  ))
end
