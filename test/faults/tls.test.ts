/**
 * Optional TLS (scenario S5): servers with a certificate (and optionally required client
 * certificates), clients with `tls` options or the process-wide `AS_TLS_CA`, real subprocesses
 * and certificates made with openssl at test time. The token still travels as metadata.
 */
import { afterAll, beforeAll, describe, expect, test } from "bun:test";
import { readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { AgentServerNotAliveError, RpcAgentServerLauncher, RpcClient, UnauthenticatedError, connect } from "../../src/index.ts";
import { closeAllConnections } from "../../src/client/connections.ts";
import { makeTestCerts, type TestCerts } from "../fixtures/certs.ts";
import { cliServer, subServer } from "../fixtures/fault-harness.ts";
import { Sturdy } from "../fixtures/fault-server/agents.ts";
import { rejection } from "../helpers/grpc.ts";
import { SOURCE_CLI, runCli } from "../helpers/cli.ts";

let certs: TestCerts;

beforeAll(() => {
  certs = makeTestCerts();
});

afterAll(async () => {
  await closeAllConnections();
  certs.remove();
});

/** A call that must fail UNAVAILABLE, and fast (no deadline, no hang in backoff). */
async function unavailable(p: PromiseLike<unknown>): Promise<void> {
  const t0 = performance.now();
  const e = await rejection(p);
  expect(e).toBeInstanceOf(AgentServerNotAliveError);
  expect(e.code).toBe("UNAVAILABLE");
  expect(performance.now() - t0).toBeLessThan(1000);
}

describe("a TLS server", () => {
  test("TLS client + TLS server work, with the token as metadata; plaintext, wrong-CA and no-CA clients fail UNAVAILABLE fast", async () => {
    const tls = { ca: certs.ca };
    await using s = await subServer({ tlsCert: certs.serverCert, tlsKey: certs.serverKey, token: "tls-token" }, { token: "tls-token", tls });
    // The key never travels on the server's command line.
    const cmdline = readFileSync(`/proc/${s.pid}/cmdline`, "latin1");
    expect(cmdline).not.toContain("PRIVATE KEY");
    expect(cmdline).not.toContain(certs.serverKey);
    const w = Sturdy.toDist({ ...s.conf, token: "tls-token", tls });
    expect(await w.ping()).toBe("pong");
    expect(await w.work(1)).toBe(1);
    expect(await connect<Sturdy>({ ...s.conf, oid: w.oid, token: "tls-token", tls }).count()).toBe(1);
    // An IP address as the host: verified against the certificate's IP subjectAltName.
    expect(await new RpcClient("127.0.0.1", s.port, { token: "tls-token", tls }).isAlive()).toBe(true);
    // PEM contents and Buffers work as well as paths.
    const pem = readFileSync(certs.ca, "utf8");
    expect(await new RpcClient("127.0.0.1", s.port, { token: "tls-token", tls: { ca: pem } }).isAlive()).toBe(true);
    expect(await new RpcClient("127.0.0.1", s.port, { token: "tls-token", tls: { ca: readFileSync(certs.ca) } }).isAlive()).toBe(true);
    // Over TLS a wrong token is still UNAUTHENTICATED.
    expect(await rejection(new RpcClient("127.0.0.1", s.port, { token: "nope", tls }).getAgentList())).toBeInstanceOf(UnauthenticatedError);
    // Not TLS, or TLS that cannot verify the server: UNAVAILABLE, fast.
    await unavailable(new RpcClient("127.0.0.1", s.port, { token: "tls-token", tls: false }).getAgentList());
    await unavailable(new RpcClient("127.0.0.1", s.port, { token: "tls-token", tls: { ca: certs.rogueCa } }).getAgentList());
    await unavailable(new RpcClient("127.0.0.1", s.port, { token: "tls-token", tls: true }).getAgentList());
    expect(await new RpcClient("127.0.0.1", s.port, { token: "tls-token", tls: false }).isAlive()).toBe(false);
    // The server kept serving through all that.
    expect(await w.count()).toBe(2);
  });

  test("a TLS client against a plaintext server fails UNAVAILABLE fast", async () => {
    await using s = await subServer();
    await unavailable(new RpcClient("127.0.0.1", s.port, { tls: { ca: certs.ca } }).getAgentList());
    expect(await new RpcClient("localhost", s.port, { tls: false }).isAlive()).toBe(true);
  });

  test("tlsClientCa: a client certificate signed by that CA is required", async () => {
    const tls = { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey };
    await using s = await subServer({ tlsCert: certs.serverCert, tlsKey: certs.serverKey, tlsClientCa: certs.ca }, { tls });
    const w = Sturdy.toDist({ ...s.conf, tls });
    expect(await w.ping()).toBe("pong");
    await unavailable(new RpcClient("127.0.0.1", s.port, { tls: { ca: certs.ca } }).getAgentList());
    await unavailable(new RpcClient("127.0.0.1", s.port, { tls: { ca: certs.ca, cert: certs.rogueClientCert, key: certs.rogueClientKey } }).getAgentList());
    await unavailable(new RpcClient("127.0.0.1", s.port, { tls: false }).getAgentList());
    expect(await new RpcClient("127.0.0.1", s.port, { tls }).isAlive()).toBe(true);
    expect(await w.ping()).toBe("pong");
  });

  test("launcher options: bad TLS settings are refused at construction; client certificates count as authentication beyond loopback", () => {
    const bad = join(certs.dir, "not-pem.txt");
    writeFileSync(bad, "hello");
    expect(() => new RpcAgentServerLauncher({ tlsCert: certs.serverCert })).toThrow(/tlsCert and tlsKey go together/);
    expect(() => new RpcAgentServerLauncher({ tlsCert: certs.serverCert, tlsKey: join(certs.dir, "missing.key") })).toThrow(/tlsKey: cannot read/);
    expect(() => new RpcAgentServerLauncher({ tlsCert: bad, tlsKey: certs.serverKey })).toThrow(/holds no PEM data/);
    expect(() => new RpcAgentServerLauncher({ tlsClientCa: certs.ca })).toThrow(/tlsClientCa needs tlsCert/);
    expect(() => new RpcAgentServerLauncher({ host: "0.0.0.0", tlsCert: certs.serverCert, tlsKey: certs.serverKey })).toThrow(/without a token/);
    expect(() => new RpcAgentServerLauncher({ host: "0.0.0.0", tlsCert: certs.serverCert, tlsKey: certs.serverKey, tlsClientCa: certs.ca })).not.toThrow();
    expect(() => new RpcClient("localhost", 1, { tls: { ca: join(certs.dir, "missing.pem") } })).toThrow(/tls.ca: cannot read/);
    expect(() => new RpcClient("localhost", 1, { tls: { cert: certs.clientCert } })).toThrow(/tls.cert and tls.key go together/);
  });
});

describe("as-server with TLS", () => {
  test("--tls-cert/--tls-key: status and stop reach it with AS_TLS_CA, not without; bad TLS flags exit 2", async () => {
    await using srv = await cliServer(["--tls-cert", certs.serverCert, "--tls-key", certs.serverKey]);
    expect(srv.stdout.text).toMatch(/listening on localhost:\d+ \(server id \S+\) over TLS/);
    const port = String(srv.port);
    const plain = await runCli(SOURCE_CLI, ["status", "--port", port]);
    expect(plain.code).toBe(1);
    const st = await runCli(SOURCE_CLI, ["status", "--port", port, "--json"], { env: { AS_TLS_CA: certs.ca } });
    expect(st.code).toBe(0);
    expect(JSON.parse(st.stdout)).toMatchObject({ server: { id: srv.serverId } });
    const sp = await runCli(SOURCE_CLI, ["stop", "--port", port], { env: { AS_TLS_CA: certs.ca } });
    expect(sp.code).toBe(0);
    expect(await srv.proc.exited).toBe(0);
    for (const args of [
      ["--tls-cert", certs.serverCert],
      ["--tls-key", certs.serverKey],
      ["--tls-cert", certs.serverCert, "--tls-key", join(certs.dir, "missing.key")],
      ["--tls-client-ca", certs.ca],
      ["--tls-cert", certs.dir, "--tls-key", certs.serverKey],
    ]) {
      const r = await runCli(SOURCE_CLI, ["start", "--port", "0", ...args]);
      expect({ args, code: r.code }).toEqual({ args, code: 2 });
      expect(r.stderr.trimEnd().split("\n")).toHaveLength(1);
    }
  });

  test("--tls-client-ca lets a server listen beyond loopback without a token; it then requires client certificates", async () => {
    await using srv = await cliServer(["--host", "0.0.0.0", "--tls-cert", certs.serverCert, "--tls-key", certs.serverKey, "--tls-client-ca", certs.ca]);
    expect(srv.stdout.text).toMatch(/over TLS, client certificates required/);
    expect(srv.stdout.text + srv.stderr.text).not.toContain("--insecure");
    const tls = { ca: certs.ca, cert: certs.clientCert, key: certs.clientKey };
    expect(await new RpcClient("localhost", srv.port, { tls }).isAlive()).toBe(true);
    await unavailable(new RpcClient("127.0.0.1", srv.port, { tls: { ca: certs.ca } }).getAgentList());
  });

  test("references to objects on a TLS server work from another server that has AS_TLS_CA, and not from one without it; child listeners stay plaintext", async () => {
    await using secure = await cliServer(["--tls-cert", certs.serverCert, "--tls-key", certs.serverKey]);
    await using withCa = await cliServer([], { env: { AS_TLS_CA: certs.ca } });
    await using withoutCa = await subServer();
    const x = Sturdy.toDist({ host: "localhost", port: secure.port, tls: { ca: certs.ca } });
    expect(await x.count()).toBe(1);
    const a = Sturdy.toDist({ host: "localhost", port: withCa.port });
    expect(await a.callOther(x)).toBe(2);
    const b = Sturdy.toDist(withoutCa.conf);
    const e = await rejection(b.callOther(x));
    expect(e.code).toBe("UNAVAILABLE");
    // A child server of this process, handed to the server with AS_TLS_CA: reached over its
    // plaintext loopback listener with its own token, whatever the process-wide TLS default.
    await using child = new Sturdy().toDist();
    expect(await child.count()).toBe(1);
    expect(await a.callOther(child)).toBe(2);
    expect(await x.calls).toBe(2);
  });
});
