// Hardhat 2 configuration that compiles offline.
//
// Hardhat normally downloads a native solc on first compile, which fails without internet.
// We pin the compiler to the wasm build shipped in the npm `solc` package instead, so
// `npx hardhat compile` works on a fresh machine. The Python side (node/chain) reads the
// artifacts this writes to `artifacts/`: one build, one source of truth.
const { subtask } = require("hardhat/config");
const { TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD } = require("hardhat/builtin-tasks/task-names");

const SOLC_VERSION = "0.8.30";

subtask(TASK_COMPILE_SOLIDITY_GET_SOLC_BUILD, async (args, hre, runSuper) => {
  if (args.solcVersion !== SOLC_VERSION) {
    return runSuper();
  }
  const solc = require("solc");
  return {
    compilerPath: require.resolve("solc/soljson.js"),
    isSolcJs: true,
    version: args.solcVersion,
    longVersion: solc.version(),
  };
});

/** @type import('hardhat/config').HardhatUserConfig */
module.exports = {
  solidity: {
    version: SOLC_VERSION,
    settings: {
      optimizer: { enabled: true, runs: 10000 },
      // via-IR: struct-heavy registry calls exceed the legacy pipeline's stack; IR also optimises better.
      viaIR: true,
      // cancun: supported by anvil, hardhat and py-evm alike (prague is not everywhere yet).
      evmVersion: "cancun",
    },
  },
  paths: {
    sources: "./contracts",
    artifacts: "./artifacts",
    cache: "./cache",
  },
  networks: {
    hardhat: { chainId: 31337 },
  },
};
