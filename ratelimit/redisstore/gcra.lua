-- GCRA for one key, on Redis's clock: the same arithmetic as decide in
-- package ratelimit, in nanoseconds, exactly.
--
-- KEYS[1]  the key; its value is the theoretical arrival time (TAT) in
--          nanoseconds since the Unix epoch, as decimal digits.
-- ARGV[1], ARGV[2]  inc = interval*n, as seconds and nanoseconds
-- ARGV[3], ARGV[4]  tol = interval*burst, as seconds and nanoseconds
--
-- Returns {1, new_s, new_ns} when allowed, new = TAT-now after the
-- events, or {0, rel_s, rel_ns, ex_s, ex_ns} when denied, rel = TAT-now
-- and ex = how long until the events would be admitted.
--
-- Lua has only doubles, exact to 2^53: nanoseconds since the epoch
-- (~2^61) are not. Every time is therefore a pair (seconds, nanoseconds)
-- normalized to 0 <= nanoseconds < 1e9, and every pair operation is exact
-- for any limit package ratelimit accepts.

local function norm(s, ns)
  local carry = math.floor(ns / 1e9)
  return s + carry, ns - carry * 1e9
end

local t = redis.call('TIME')
local now_s, now_ns = tonumber(t[1]), tonumber(t[2]) * 1000
local inc_s, inc_ns = tonumber(ARGV[1]), tonumber(ARGV[2])
local tol_s, tol_ns = tonumber(ARGV[3]), tonumber(ARGV[4])

-- rel = max(TAT, now) - now
local rel_s, rel_ns = 0, 0
local v = redis.call('GET', KEYS[1])
if v then
  rel_s, rel_ns = norm(tonumber(string.sub(v, 1, -10)) - now_s, tonumber(string.sub(v, -9)) - now_ns)
  if rel_s < 0 then
    rel_s, rel_ns = 0, 0
  end
end

local new_s, new_ns = norm(rel_s + inc_s, rel_ns + inc_ns)
local ex_s, ex_ns = norm(new_s - tol_s, new_ns - tol_ns)
if ex_s > 0 or (ex_s == 0 and ex_ns > 0) then
  -- Denied: nothing is consumed, nothing written.
  return {0, rel_s, rel_ns, ex_s, ex_ns}
end

if inc_s > 0 or inc_ns > 0 then
  -- The key expires when its budget is whole again: forgetting it then
  -- changes no decision.
  local at_s, at_ns = norm(now_s + new_s, now_ns + new_ns)
  redis.call('SET', KEYS[1], string.format('%d%09d', at_s, at_ns),
    'PX', new_s * 1000 + math.ceil(new_ns / 1e6))
end
return {1, new_s, new_ns}
