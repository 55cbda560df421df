-- wrk script for bench/bench.py: one scenario's requests, status counting,
-- and a JSON summary written to a file. Configured by environment variables
-- (all optional):
--   BENCH_METHOD   GET (default), POST, ...
--   BENCH_PATHS    file with one request path per line, sent in turn
--                  (default: the path of the URL given to wrk)
--   BENCH_HEADERS  file with one "Name: value" header per line
--   BENCH_BODY     file whose bytes are the request body
--   BENCH_OUT      where done() writes the summary (JSON)

local function read(path)
  local f = assert(io.open(path, "rb"))
  local data = f:read("*a")
  f:close()
  return data
end

local function lines(path)
  local out = {}
  for line in read(path):gmatch("[^\r\n]+") do
    out[#out + 1] = line
  end
  return out
end

local threads = {}

function setup(thread)
  threads[#threads + 1] = thread
end

function init(args)
  statuses = {}
  local method = os.getenv("BENCH_METHOD") or "GET"
  local headers = {}
  if os.getenv("BENCH_HEADERS") then
    for _, line in ipairs(lines(os.getenv("BENCH_HEADERS"))) do
      local name, value = line:match("^([^:]+):%s*(.*)$")
      headers[name] = value
    end
  end
  local body = nil
  if os.getenv("BENCH_BODY") then
    body = read(os.getenv("BENCH_BODY"))
  end
  local paths = { wrk.path }
  if os.getenv("BENCH_PATHS") then
    paths = lines(os.getenv("BENCH_PATHS"))
  end
  requests_ = {}
  for i, path in ipairs(paths) do
    requests_[i] = wrk.format(method, path, headers, body)
  end
  next_ = 0
end

function request()
  next_ = next_ % #requests_ + 1
  return requests_[next_]
end

function response(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end

function done(summary, latency, requests)
  local counts = {}
  for _, thread in ipairs(threads) do
    for status, n in pairs(thread:get("statuses")) do
      counts[status] = (counts[status] or 0) + n
    end
  end
  local parts = {}
  for status, n in pairs(counts) do
    parts[#parts + 1] = string.format('"%d": %d', status, n)
  end
  local e = summary.errors
  local json = string.format(
    '{"requests": %d, "duration_us": %d, "bytes": %d, ' ..
    '"errors": {"connect": %d, "read": %d, "write": %d, "timeout": %d}, ' ..
    '"latency_us": {"min": %d, "mean": %.1f, "p50": %d, "p90": %d, "p99": %d, "max": %d}, ' ..
    '"statuses": {%s}}\n',
    summary.requests, summary.duration, summary.bytes,
    e.connect, e.read, e.write, e.timeout,
    latency.min, latency.mean, latency:percentile(50), latency:percentile(90),
    latency:percentile(99), latency.max,
    table.concat(parts, ", "))
  local out = os.getenv("BENCH_OUT")
  if out then
    local f = assert(io.open(out, "w"))
    f:write(json)
    f:close()
  else
    io.write(json)
  end
end
