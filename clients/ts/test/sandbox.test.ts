// End-to-end test of the generated client: builds chainbroker, starts `chainbroker sandbox` (domains A,
// B and C and the broker) on free loopback ports, and calls ChainService and AuditService over gRPC.
//
// CHAINBROKER_BIN=/path/to/chainbroker skips the build and runs that binary instead.

import assert from "node:assert/strict";
import { spawn, execFile, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { after, before, describe, it } from "node:test";
import { fileURLToPath } from "node:url";
import { promisify } from "node:util";

import {
  Code,
  ConnectError,
  ErrorInfoSchema,
  Outcome,
  Reason,
  createChainbrokerClient,
  errorInfo,
  parseReason,
  reasonString,
  type ChainbrokerClient,
  type Interceptor,
} from "../src/index.js";

// This file runs as dist/test/sandbox.test.js inside clients/ts.
const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), "../../../..");

const ALICE_SUB_A = "2b1c6f3e-8a4d-4f0b-9c57-1d2e3f4a5b6c"; // alice in domain A
const ALICE_SUB_B = "c3d4e5f6-a7b8-4c9d-8e0f-112233445566"; // alice's linked user in domain B
const ALICE_SUB_C = "e5f6a7b8-c9d0-4eb1-8a21-334455667788"; // alice's linked user in domain C (ID-JAG receiver)

const BUILD_TIMEOUT_MS = 300_000; // a cold `go build` compiles grpc, jwx, go-redis...
const READY_TIMEOUT_MS = 120_000;

async function freePort(): Promise<number> {
  return new Promise((res, rej) => {
    const srv = createServer();
    srv.unref();
    srv.on("error", rej);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === "object" && addr ? res(addr.port) : rej(new Error("no port"))));
    });
  });
}

function jwtPayload(jwt: string): Record<string, unknown> {
  const parts = jwt.split(".");
  assert.equal(parts.length, 3, "access token is not a compact JWS");
  return JSON.parse(Buffer.from(parts[1]!, "base64url").toString("utf8")) as Record<string, unknown>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe("chainbroker sandbox over gRPC", () => {
  let child: ChildProcess | undefined;
  let childExit: Promise<void> | undefined;
  let tmp: string | undefined;
  let output = ""; // the sandbox's log, printed when something goes wrong
  let ports: { grpc: number; http: number; a: number; b: number; c: number; cloud: number };
  let client: ChainbrokerClient;

  const killChild = (signal: NodeJS.Signals) => {
    if (child?.pid !== undefined && child.exitCode === null && child.signalCode === null) {
      try {
        process.kill(-child.pid, signal); // the whole process group (detached: its own group)
      } catch {
        // already gone
      }
    }
  };
  // The sandbox runs in its own process group, so a Ctrl-C or a CI timeout that ends this process does
  // not reach it: kill it from here as well.
  const removeTmp = () => {
    if (tmp) rmSync(tmp, { recursive: true, force: true });
  };
  const onExit = () => {
    killChild("SIGKILL");
    removeTmp();
  };
  const onSignal = (signal: NodeJS.Signals) => {
    onExit();
    process.exit(128 + (signal === "SIGINT" ? 2 : signal === "SIGHUP" ? 1 : 15));
  };
  const signals: NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

  before(
    async () => {
      tmp = mkdtempSync(join(tmpdir(), "chainbroker-ts-"));
      let bin = process.env.CHAINBROKER_BIN;
      if (!bin) {
        bin = join(tmp, "chainbroker");
        await promisify(execFile)("go", ["build", "-o", bin, "./cmd/chainbroker"], {
          cwd: repoRoot,
          timeout: BUILD_TIMEOUT_MS,
        });
      }
      ports = { grpc: await freePort(), http: await freePort(), a: await freePort(), b: await freePort(), c: await freePort(), cloud: await freePort() };
      const args = [
        "sandbox",
        "--grpc-addr", `127.0.0.1:${ports.grpc}`,
        "--http-addr", `127.0.0.1:${ports.http}`,
        "--domain-a-addr", `127.0.0.1:${ports.a}`,
        "--domain-b-addr", `127.0.0.1:${ports.b}`,
        "--domain-c-addr", `127.0.0.1:${ports.c}`,
        "--cloud-addr", `127.0.0.1:${ports.cloud}`,
      ];
      child = spawn(bin, args, { cwd: repoRoot, detached: true, stdio: ["ignore", "pipe", "pipe"] });
      process.on("exit", onExit);
      for (const s of signals) process.on(s, onSignal);
      childExit = new Promise((res) => child!.once("exit", () => res()));
      child.stdout!.on("data", (d: Buffer) => (output += d.toString()));
      child.stderr!.on("data", (d: Buffer) => (output += d.toString()));

      const deadline = Date.now() + READY_TIMEOUT_MS;
      for (;;) {
        if (child.exitCode !== null || child.signalCode !== null) {
          throw new Error(`chainbroker sandbox exited early (${child.exitCode ?? child.signalCode}):\n${output}`);
        }
        try {
          const res = await fetch(`http://127.0.0.1:${ports.http}/readyz`, { signal: AbortSignal.timeout(2000) });
          if (res.status === 200) break;
        } catch {
          // not listening yet
        }
        if (Date.now() > deadline) {
          throw new Error(`chainbroker sandbox not ready after ${READY_TIMEOUT_MS} ms:\n${output}`);
        }
        await sleep(200);
      }
      client = createChainbrokerClient(`http://127.0.0.1:${ports.grpc}`, { timeoutMs: 30_000 });
    },
    { timeout: BUILD_TIMEOUT_MS + READY_TIMEOUT_MS + 30_000 },
  );

  after(async () => {
    client?.close();
    killChild("SIGTERM");
    if (childExit) {
      let timer: NodeJS.Timeout | undefined;
      const stopped = await Promise.race([
        childExit.then(() => true),
        new Promise<boolean>((res) => (timer = setTimeout(() => res(false), 10_000))),
      ]);
      clearTimeout(timer);
      if (!stopped) {
        killChild("SIGKILL");
        await childExit;
      }
    }
    process.off("exit", onExit);
    for (const s of signals) process.off(s, onSignal);
    removeTmp();
  });

  // aliceToken is alice's access token from domain A (password grant of sandbox-agent); with scope
  // openid, her ID token.
  async function aliceToken(kind: "access_token" | "id_token" = "access_token"): Promise<string> {
    const form: Record<string, string> = {
      grant_type: "password",
      client_id: "sandbox-agent",
      username: "alice",
      password: "alice",
    };
    if (kind === "id_token") form.scope = "openid";
    const res = await fetch(`http://127.0.0.1:${ports.a}/realms/domain-a/protocol/openid-connect/token`, {
      method: "POST",
      body: new URLSearchParams(form),
    });
    assert.equal(res.status, 200, `domain A password grant: ${res.status} ${await res.clone().text()}`);
    const body = (await res.json()) as { access_token?: string; id_token?: string };
    const tok = body[kind];
    assert.ok(tok, `domain A returned no ${kind}`);
    return tok;
  }

  it("Chain carries alice's ID token as an ID-JAG into domain C (profile id_jag)", async () => {
    const subjectToken = await aliceToken("id_token");
    const res = await client.chain.chain({
      subjectToken,
      subjectTokenType: "urn:ietf:params:oauth:token-type:id_token",
      targetDomain: "domain-c",
    });
    const claims = jwtPayload(res.accessToken);
    assert.equal(claims.iss, `http://127.0.0.1:${ports.c}/realms/domain-c`);
    assert.equal(claims.sub, ALICE_SUB_C);
    assert.equal(res.profile, "id_jag");
    assert.deepEqual(
      res.hops.map((h) => h.domain),
      ["domain-a", "domain-c"],
    );
    const event = (await client.audit.getAuditEvent({ id: res.auditId })).event;
    assert.equal(event?.profile, "id_jag");
    assert.equal(event?.targetDomain, "domain-c");
  });

  it("Chain returns domain B's token for alice, and ListAuditEvents records it", async () => {
    const subjectToken = await aliceToken();
    const res = await client.chain.chain({ subjectToken, targetDomain: "domain-b" });

    assert.ok(res.accessToken, "accessToken is empty");
    const claims = jwtPayload(res.accessToken);
    assert.equal(claims.iss, `http://127.0.0.1:${ports.b}/realms/domain-b`);
    assert.equal(claims.sub, ALICE_SUB_B);
    assert.equal(res.tokenType, "Bearer");
    assert.equal(res.issuedTokenType, "urn:ietf:params:oauth:token-type:access_token");
    assert.ok(res.expiresIn > 0, `expiresIn = ${res.expiresIn}`);
    assert.ok(res.auditId, "auditId is empty");
    assert.deepEqual(
      res.hops.map((h) => h.domain),
      ["domain-a", "domain-b"],
    );
    for (const hop of res.hops) {
      assert.ok(hop.endpoint.startsWith("http://127.0.0.1:"), hop.endpoint);
      assert.ok(hop.duration, "hop without duration");
    }

    const list = await client.audit.listAuditEvents({ subject: ALICE_SUB_A });
    const event = list.events.find((e) => e.id === res.auditId);
    assert.ok(event, `audit event ${res.auditId} not listed: ${list.events.map((e) => e.id).join(", ")}`);
    assert.equal(event.outcome, Outcome.SUCCESS);
    assert.equal(event.subject, ALICE_SUB_A);
    assert.equal(event.sourceDomain, "domain-a");
    assert.equal(event.targetDomain, "domain-b");
    assert.equal(event.reason, "");
    assert.ok(event.time, "event without time");

    const got = await client.audit.getAuditEvent({ id: res.auditId });
    assert.equal(got.event?.id, res.auditId);
    assert.equal(got.event?.outcome, Outcome.SUCCESS);
  });

  it("Chain to an unknown domain fails with INVALID_ARGUMENT and reason DOMAIN_UNKNOWN", async () => {
    const subjectToken = await aliceToken();
    await assert.rejects(client.chain.chain({ subjectToken, targetDomain: "nope" }), (err: unknown) => {
      assert.ok(err instanceof ConnectError, `not a ConnectError: ${String(err)}`);
      assert.equal(err.code, Code.InvalidArgument, err.message);
      const info = errorInfo(err);
      assert.ok(info, `no google.rpc.ErrorInfo detail in ${JSON.stringify(err.details)}`);
      assert.equal(info.reason, "DOMAIN_UNKNOWN");
      assert.equal(parseReason(info.reason), Reason.DOMAIN_UNKNOWN);
      assert.equal(reasonString(Reason.DOMAIN_UNKNOWN), "DOMAIN_UNKNOWN");
      assert.equal(info.domain, "chainbroker");
      assert.equal(info.metadata["field"], "target_domain");
      assert.equal(err.findDetails(ErrorInfoSchema).length, 1);
      return true;
    });

    const failures = await client.audit.listAuditEvents({ targetDomain: "nope", outcome: Outcome.FAILURE });
    assert.ok(
      failures.events.some((e) => e.reason === "DOMAIN_UNKNOWN"),
      `no DOMAIN_UNKNOWN failure audited: ${JSON.stringify(failures.events.map((e) => e.reason))}`,
    );
  });

  it("ListDomains lists the sandbox domains and the chains between them", async () => {
    const res = await client.chain.listDomains({});
    assert.deepEqual(res.domains.map((d) => d.name).sort(), ["aws", "azure", "domain-a", "domain-b", "domain-c", "gcp"]);
    assert.deepEqual(
      Object.fromEntries(res.domains.map((d) => [d.name, d.kind])),
      { "domain-a": "oauth", "domain-b": "oauth", "domain-c": "oauth", aws: "aws", azure: "azure", gcp: "gcp" },
    );
    assert.ok(
      res.chains.some((c) => c.sourceDomain === "domain-a" && c.targetDomain === "domain-b" && c.profile === "jwt_grant"),
      "chain domain-a -> domain-b not listed",
    );
    assert.ok(
      res.chains.some((c) => c.sourceDomain === "domain-a" && c.targetDomain === "domain-c" && c.profile === "id_jag"),
      "chain domain-a -> domain-c (id_jag) not listed",
    );
  });

  // The sandbox takes anonymous callers and configures neither API keys nor a caller JWT issuer, so a
  // call that presents either credential is refused (never downgraded to anonymous): that refusal, naming
  // the credential, shows the header reached the broker.
  for (const [name, options, header, value, refusal] of [
    ["x-api-key", { apiKey: "k-123" }, "x-api-key", "k-123", /API key/i],
    ["authorization: Bearer", { bearerToken: "t-456" }, "authorization", "Bearer t-456", /bearer token/i],
  ] as const) {
    it(`sends ${name} when given`, async () => {
      const seen: Headers[] = [];
      const record: Interceptor = (next) => (req) => {
        seen.push(new Headers(req.header));
        return next(req);
      };
      const withCredential = createChainbrokerClient(`http://127.0.0.1:${ports.grpc}`, {
        ...options,
        interceptors: [record],
      });
      try {
        await assert.rejects(withCredential.chain.listDomains({}), (err: unknown) => {
          assert.ok(err instanceof ConnectError, `not a ConnectError: ${String(err)}`);
          assert.equal(err.code, Code.Unauthenticated, err.message);
          assert.match(err.rawMessage, refusal);
          return true;
        });
      } finally {
        withCredential.close();
      }
      assert.equal(seen.length, 1);
      assert.equal(seen[0]!.get(header), value);
    });
  }
});
