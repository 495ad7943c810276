// The counter's mutators. Replicache runs them optimistically on the client; the
// server runs its twin in server/mutators.py, and its result is the one that sticks.

function isNumber(x) {
  return typeof x === "number" && Number.isFinite(x);
}

/** count = (count or 0) + delta; returns the new count. */
export async function increment(tx, delta) {
  if (!isNumber(delta)) {
    throw new TypeError(`increment expects a number, got ${JSON.stringify(delta)}`);
  }
  const prev = (await tx.get("count")) ?? 0;
  if (!isNumber(prev)) {
    throw new TypeError(`count holds a non-number: ${JSON.stringify(prev)}`);
  }
  const next = prev + delta;
  await tx.put("count", next);
  return next;
}

export const mutators = { increment };
