// server.js: the endpoint of bench/gateway.sh in a conventional stack,
// Node.js + Fastify + pg, for comparison with the mandant gateway.
//
// GET /bench/v1/items/:itemId does per request what an application server
// usually does: one pooled connection, BEGIN; verify the bearer token in
// the database (mandant.authenticate, which also sets tenant, user and
// scopes for the transaction); check the scope; call the tenant-scoped
// SECURITY DEFINER function; COMMIT; and answer the same envelope as
// mandant.http_call ({"success", "data", "meta": {"timestamp",
// "requestId"}}), with the same error statuses for what the bench can
// produce (401 without a valid token, 403 without the scope, 404 no row).
//
//   PEER_PORT       port on 127.0.0.1 (default 8899)
//   PEER_POOL       pg pool size (default 8)
//   PGHOST, PGPORT, PGUSER, PGDATABASE: where pg connects (libpq's names)
'use strict';

const crypto = require('node:crypto');
const fastify = require('fastify')({ logger: false });
const { Pool } = require('pg');

const pool = new Pool({ max: Number(process.env.PEER_POOL || 8) });
const idPattern = /^[A-Za-z0-9._-]{1,64}$/;

// envelope builds the answer of a request, as http_call does.
function envelope(requestId, data, error) {
	const meta = { timestamp: new Date().toISOString(), requestId };
	return error ? { success: false, error, meta } : { success: true, data, meta };
}

fastify.get('/bench/v1/items/:itemId', async (request, reply) => {
	const given = request.headers['x-request-id'];
	const requestId = given && idPattern.test(given) ? given : crypto.randomUUID();
	const auth = request.headers.authorization || '';
	const token = auth.startsWith('Bearer ') ? auth.slice(7).trim() : '';
	const itemId = Number.parseInt(request.params.itemId, 10);

	reply.header('x-request-id', requestId);
	if (!Number.isInteger(itemId)) {
		reply.code(400);
		return envelope(requestId, null, { code: 'VALIDATION_ERROR', message: 'itemId must be an integer.' });
	}
	if (token === '') {
		reply.code(401);
		return envelope(requestId, null, { code: 'UNAUTHORIZED', message: 'A bearer token is required.' });
	}

	const client = await pool.connect();
	try {
		await client.query('BEGIN');
		try {
			await client.query('SELECT mandant.authenticate($1)', [token]);
		} catch (e) {
			await client.query('ROLLBACK');
			reply.code(401);
			return envelope(requestId, null, { code: 'UNAUTHORIZED', message: 'The token is not valid.' });
		}
		const r = await client.query(
			"SELECT mandant.has_scope('read') AS allowed, " +
			"CASE WHEN mandant.has_scope('read') THEN bench.item_get($1) END AS data", [itemId]);
		await client.query('COMMIT');
		if (!r.rows[0].allowed) {
			reply.code(403);
			return envelope(requestId, null, { code: 'FORBIDDEN', message: 'The token lacks the scope read.' });
		}
		if (r.rows[0].data === null) {
			reply.code(404);
			return envelope(requestId, null, { code: 'NOT_FOUND', message: 'No such item.' });
		}
		return envelope(requestId, r.rows[0].data, null);
	} catch (e) {
		await client.query('ROLLBACK').catch(() => {});
		reply.code(500);
		return envelope(requestId, null, { code: 'INTERNAL_ERROR', message: 'The request could not be completed.' });
	} finally {
		client.release();
	}
});

fastify.listen({ port: Number(process.env.PEER_PORT || 8899), host: '127.0.0.1' }).catch((e) => {
	console.error(e);
	process.exit(1);
});
