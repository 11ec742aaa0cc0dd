// Signs a compact JWS with jose, the way a Node.js identity provider would.
//
//   echo '{"jwk": {...private JWK...}, "header": {"alg": "ES256", "kid": "k1"},
//          "claims": {...}}' | node mint.mjs
//
// Prints the token on stdout. The header is used as given (alg, kid, typ);
// claims are signed exactly as given (no iat/exp added).
import { CompactSign, importJWK } from 'jose';

const chunks = [];
for await (const chunk of process.stdin) chunks.push(chunk);
const { jwk, header, claims } = JSON.parse(Buffer.concat(chunks).toString('utf8'));

const key = await importJWK(jwk, header.alg);
const token = await new CompactSign(new TextEncoder().encode(JSON.stringify(claims)))
  .setProtectedHeader(header)
  .sign(key);
process.stdout.write(`${token}\n`);
