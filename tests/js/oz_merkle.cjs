#!/usr/bin/env node
// Reference output of @openzeppelin/merkle-tree's StandardMerkleTree, for tests/test_merkle.py.
//
// Usage: node tests/js/oz_merkle.cjs < request.json
//
// The request is one case or a batch (one process for many cases keeps the tests fast):
//   {"encoding": ["uint256", "address"], "values": [["1", "0x..."], ...]}   build a tree
//   {"load": <a standard-v1 dump>}                                         load (and validate) a dump
//   {"batch": [<case>, <case>, ...]}
// Big integers travel as decimal strings, as in the library's own dump format.
// Each case answers {"dump", "root", "proofs"} (proofs[i] is the proof of values[i]) or, when the
// library refuses the input, {"error": "<message>"}; a batch answers {"results": [...]}.
"use strict";

const { StandardMerkleTree } = require("@openzeppelin/merkle-tree");

function answer(request) {
  try {
    const tree =
      request.load !== undefined
        ? StandardMerkleTree.load(request.load)
        : StandardMerkleTree.of(request.values, request.encoding);
    const proofs = [];
    for (let i = 0; i < tree.length; i++) proofs.push(tree.getProof(i));
    return { dump: tree.dump(), root: tree.root, proofs };
  } catch (e) {
    return { error: String(e && e.message ? e.message : e) };
  }
}

function main() {
  const chunks = [];
  process.stdin.on("data", (c) => chunks.push(c));
  process.stdin.on("end", () => {
    const request = JSON.parse(Buffer.concat(chunks).toString("utf8"));
    const reply = request.batch !== undefined ? { results: request.batch.map(answer) } : answer(request);
    process.stdout.write(JSON.stringify(reply));
  });
}

main();
