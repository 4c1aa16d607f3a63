// peer.mjs: the same cycles as directprog.c with the official NATS JavaScript client
// (@nats-io/kv + @nats-io/transport-node), speaking the same stdin protocol (see common.h):
// "OP SIZE N" in, one line of N microsecond timings out. Key p<size>.
//   node peer.mjs URL BUCKET      (run with node_modules from `npm install` beside it or NODE_PATH)
import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";
import { createInterface } from "node:readline";
import { performance } from "node:perf_hooks";

const [url, bucket] = process.argv.slice(2);
const nc = await connect({ servers: url.replace(/^nats:\/\//, "") });
const kv = await new Kvm(nc).open(bucket);
const revs = new Map();
let iter = 0;

async function cycle(op, size) {
  const key = `p${size}`;
  iter++;
  if (op === "init") {
    revs.set(size, await kv.put(key, new Uint8Array(size).fill(97)));
  } else if (op === "read") {
    const e = await kv.get(key);
    const copy = new Uint8Array(e.value);  // the program's own copy, as read() makes
    revs.set(size, e.revision);
    return copy.length;
  } else if (op === "write") {
    const v = new Uint8Array(size).fill(97);
    v[0] = 97 + (iter % 26);
    revs.set(size, await kv.update(key, v, revs.get(size)));
  } else if (op === "rmw") {
    const e = await kv.get(key);
    const v = new Uint8Array(e.value);
    v[0] = 97 + (iter % 26);
    revs.set(size, await kv.update(key, v, e.revision));
  } else {
    throw new Error(`bad op ${op}`);
  }
  return 0;
}

for await (const line of createInterface({ input: process.stdin })) {
  const [op, size, n] = line.trim().split(/\s+/);
  const t = [];
  for (let i = 0; i < Number(n); i++) {
    const t0 = performance.now();
    await cycle(op, Number(size));
    t.push(((performance.now() - t0) * 1000).toFixed(2));
  }
  process.stdout.write(t.join(" ") + "\n");
}
await nc.close();
