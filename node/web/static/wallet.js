// The browser wallet: finds it (EIP-6963 announcements, the visitor choosing when several
// announce; else window.ethereum), signs in with
// Ethereum (EIP-4361 message written by the server, signed with personal_sign), and sends the
// transactions the server builds ({to, data, value, chainId}) with eth_sendTransaction, one at a
// time: gas estimated by the server first (it decodes a revert into a readable reason), then the
// receipt polled from the server. Also runs the same actions with the node's keystore when the
// page offers it (the node's operator on its own machine). No web3 library: EIP-1193 only.
"use strict";
const dnWallet = (function () {
  const announced = [];  // EIP-6963 {info, provider}, in announcement order
  window.addEventListener("eip6963:announceProvider", (e) => {
    if (e.detail && e.detail.provider && !announced.some((a) => a.info.uuid === e.detail.info.uuid)) announced.push(e.detail);
  });
  window.dispatchEvent(new Event("eip6963:requestProvider"));
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // The wallet the visitor chose when several announced themselves (kept for the browser tab).
  const CHOICE = "dn-wallet";
  function current() {
    const uuid = sessionStorage.getItem(CHOICE);
    return announced.find((a) => a.info.uuid === uuid) || announced[0] || null;
  }

  function provider() {
    const a = current();
    if (a) return a.provider;
    if (window.ethereum) return window.ethereum;
    throw new Error("No browser wallet found. Install one (any EIP-6963 or EIP-1193 wallet) and reload the page.");
  }

  function walletName() { const a = current(); return a ? a.info.name : window.ethereum ? "browser wallet" : ""; }

  // Several wallets announced: one button per wallet after `anchor`; resolves with the one clicked.
  function choose(anchor) {
    if (announced.length < 2) return Promise.resolve(current());
    document.getElementById("wallet-choice")?.remove();
    return new Promise((resolve) => {
      const box = document.createElement("div");
      box.id = "wallet-choice";
      box.className = "wallet-choice";
      box.setAttribute("role", "group");
      box.setAttribute("aria-label", "Choose a wallet");
      box.append("Sign in with: ");
      for (const a of announced) {
        const b = document.createElement("button");
        b.type = "button";
        b.className = "secondary";
        b.dataset.wallet = a.info.uuid;
        // EIP-6963 icons are data URIs; anything else (a remote URL that could track) is not shown.
        if (typeof a.info.icon === "string" && /^data:image\/(png|svg\+xml|webp|jpeg|gif)[;,]/.test(a.info.icon)) {
          const img = document.createElement("img");
          img.src = a.info.icon;
          img.alt = "";
          img.width = img.height = 16;
          b.append(img, " ");
        }
        b.append(String(a.info.name || "wallet"));
        b.addEventListener("click", () => { sessionStorage.setItem(CHOICE, a.info.uuid); box.remove(); resolve(a); });
        box.append(b);
      }
      anchor.after(box);
      box.querySelector("button").focus();
    });
  }

  // The server's answer as JSON, or an Error carrying its message (JSON {error}, or an HTML fragment's text).
  async function answer(response) {
    const text = await response.text();
    let body = null;
    try { body = JSON.parse(text); } catch (_) { /* an HTML error fragment */ }
    if (!response.ok) {
      const div = document.createElement("div");
      div.innerHTML = text;
      throw Object.assign(new Error((body && body.error) || div.textContent.trim() || response.statusText), { body });
    }
    return body;
  }

  async function post(url, body, contentType = "application/json") {
    const raw = contentType === "application/json" ? JSON.stringify(body) : body;
    const r = await fetch(url, { method: "POST", headers: { "Content-Type": contentType, "X-CSRF-Token": csrf(), Accept: "application/json" }, body: raw, credentials: "same-origin" });
    return answer(r);
  }

  function utf8Hex(text) {
    return "0x" + Array.from(new TextEncoder().encode(text), (b) => b.toString(16).padStart(2, "0")).join("");
  }

  async function ensureChain(chainId) {
    const current = await provider().request({ method: "eth_chainId" });
    if (parseInt(current, 16) === parseInt(chainId, 16)) return;
    try {
      await provider().request({ method: "wallet_switchEthereumChain", params: [{ chainId }] });
    } catch (e) {
      throw new Error(`The wallet is on chain ${parseInt(current, 16)}, this node on chain ${parseInt(chainId, 16)}: switch the wallet's network and try again.`);
    }
  }

  async function signIn() {
    const [address] = await provider().request({ method: "eth_requestAccounts" });
    if (!address) throw new Error("The wallet shared no account.");
    const m = await answer(await fetch(`/login/siwe/message?address=${encodeURIComponent(address)}`, { credentials: "same-origin" }));
    await ensureChain(m.chainId);
    const signature = await provider().request({ method: "personal_sign", params: [utf8Hex(m.message), address] });
    return post("/login/siwe", { message: m.message, signature });
  }

  async function receipt(hash, say) {
    for (let i = 0; ; i++) {
      const r = await answer(await fetch(`/tx/${hash}`, { credentials: "same-origin" }));
      if (r.status === "success") return r;
      if (r.status === "failed") throw new Error(`Transaction ${hash} failed: ${r.error}`);
      if (i % 10 === 9) say(`still waiting for ${hash} to be mined…`);
      await sleep(Math.min(250 + 100 * i, 2000));
    }
  }

  // Sends the planned transactions in order; `say` reports progress. Resolves to their hashes.
  async function sendAll(txs, say) {
    const hashes = [];
    for (const [k, tx] of txs.entries()) {
      const step = `${k + 1}/${txs.length} ${tx.label}`;
      await ensureChain(tx.chainId);
      say(`${step}: checking…`);
      const { gas } = await post("/tx/estimate", { from: tx.from, to: tx.to, data: tx.data, value: tx.value });
      say(`${step}: confirm in your wallet…`);
      const hash = await provider().request({ method: "eth_sendTransaction", params: [{ from: tx.from, to: tx.to, data: tx.data, value: tx.value, gas }] });
      say(`${step}: sent ${hash}, waiting for it to be mined…`);
      await receipt(hash, say);
      hashes.push(hash);
    }
    return hashes;
  }

  // Runs an action: with the wallet, POST `plan` → transactions → sendAll; with the keystore, POST
  // `keystore` and the server signs. `body` is JSON (or a Blob with its content type).
  async function act(how, urls, body, say, contentType = "application/json") {
    if (how === "keystore") {
      say("signing with the node's keystore…");
      return post(urls.keystore, body, contentType);
    }
    const plan = await post(urls.plan, body, contentType);
    const hashes = await sendAll(plan.txs, say);
    return { ...plan, hashes };
  }

  function status(el, text, kind) {
    el.textContent = text;
    el.className = "status" + (kind ? " " + kind : "");
  }

  // Buttons declared in the pages: data-plan / data-keystore URLs, data-body JSON, data-how.
  document.addEventListener("click", async (e) => {
    const button = e.target.closest("button[data-plan], button[data-keystore]");
    if (!button || button.dataset.custom) return;
    const box = button.closest(".action");
    const out = box.querySelector(".status");
    const body = JSON.parse(button.dataset.body || "{}");
    for (const input of box.querySelectorAll("[data-field]")) body[input.dataset.field] = input.value;
    const how = button.dataset.keystore ? "keystore" : "wallet";
    box.querySelectorAll("button").forEach((b) => (b.disabled = true));
    try {
      await act(how, { plan: button.dataset.plan, keystore: button.dataset.keystore }, body, (t) => status(out, t));
      status(out, button.dataset.done || "Done.", "ok");
      box.dataset.done = "true";
      if (button.dataset.reload) setTimeout(() => location.reload(), 800);
    } catch (err) {
      status(out, err.message || String(err), "error");
      box.querySelectorAll("button").forEach((b) => (b.disabled = false));
    }
  });

  // "Connect wallet" (the header, the sign-in page): signs in, then reloads (or goes to data-next).
  document.addEventListener("click", async (e) => {
    const button = e.target.closest("button[data-connect]");
    if (!button) return;
    const out = document.getElementById(button.dataset.status || "wallet-status");
    button.disabled = true;
    try {
      if (announced.length > 1) {
        if (out) status(out, "several wallets found: choose one");
        await choose(button);
      }
      if (out) status(out, `asking ${walletName() || "the wallet"} to sign in…`);
      const r = await signIn();
      if (out) status(out, `signed in as ${r.address}`, "ok");
      location.assign(button.dataset.next || location.href);
    } catch (err) {
      if (out) status(out, err.message || String(err), "error");
      button.disabled = false;
    }
  });

  return { provider, signIn, sendAll, act, status, post, answer };
})();
