
/* ---------------------------------------------------------------------------
 * Users, members and roles: administration
 *
 * Management operations run through the C gate mandant.gate_call()
 * (gate.c), which checks the real caller against the operation's rule and
 * then runs the identity_* function of the operation; the public functions
 * at the end of this file are SECURITY INVOKER wrappers around it.  An
 * account becomes the owner of the tenants that name its e-mail
 * (tenant.owner_email) only when the platform vouches for the address:
 * mandant_admin or a trusted backend created the account or confirmed its
 * e-mail (email_confirmed_at); a tenant administrator's new user does not.
 * ------------------------------------------------------------------------- */

/* The role of the signed-in user in a tenant, if any. */
CREATE FUNCTION mandant.actor_role(tenant uuid)
RETURNS text
LANGUAGE sql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT m.role FROM mandant.membership m
	WHERE m.tenant_id = tenant AND m.user_id = mandant.current_user_id()
$$;

COMMENT ON FUNCTION mandant.actor_role(uuid) IS
'Internal: the role of the signed-in user in a tenant.';

/*
 * check_role raises unless role exists for tenant, and unless the actor
 * may hand it out: owner only by owners (or trusted callers).
 */
CREATE FUNCTION mandant.check_role(tenant uuid, role text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM mandant.role r WHERE r.name = role AND (r.tenant_id = tenant OR r.tenant_id IS NULL)) THEN
		RAISE EXCEPTION 'role "%" does not exist', role
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'Roles are owner, admin, manager, agent, viewer and those the tenant added.',
				  HINT = 'See mandant.role, or create the role with mandant.create_role().';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_role(uuid, text) IS
'Internal: 22023 unless role exists for the tenant.';

/*
 * check_owner_change raises when an actor who is not an owner touches the
 * owner role (grants it, changes or removes an owner).  Trusted callers
 * (no signed-in user) may.
 */
CREATE FUNCTION mandant.check_owner_change(tenant uuid, old_role text, new_role text)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF 'owner' IN (old_role, new_role) AND mandant.current_user_id() IS NOT NULL
		AND mandant.actor_role(tenant) IS DISTINCT FROM 'owner' THEN
		RAISE EXCEPTION 'only owners grant or take the owner role'
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('The signed-in user is %s of the tenant.', COALESCE(mandant.actor_role(tenant), 'not a member')),
				  HINT = 'Ask an owner of the tenant.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_owner_change(uuid, text, text) IS
'Internal: 42501 when a non-owner grants, changes or removes the owner role.';

/*
 * keep_an_owner raises when no owner would be left.  The caller holds the
 * tenant's row lock, which serializes concurrent changes of its members.
 */
CREATE FUNCTION mandant.keep_an_owner(tenant uuid)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM mandant.membership m WHERE m.tenant_id = tenant AND m.role = 'owner') THEN
		RAISE EXCEPTION 'a tenant keeps at least one owner'
			USING ERRCODE = 'check_violation',
				  DETAIL = format('The change would leave tenant %s without an owner.', tenant),
				  HINT = 'Make another member owner first.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.keep_an_owner(uuid) IS
'Internal: 23514 when the tenant has no owner.';

CREATE FUNCTION mandant.identity_create_user(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	address	text := mandant.check_email(args ->> 'email');
	name	text := btrim(args ->> 'displayName');
	new_id	uuid;
	vouched	boolean := mandant.gate_caller_member_of('mandant_admin')
					   OR mandant.gate_caller_member_of('mandant_service');
BEGIN
	IF name IS NULL OR length(name) NOT BETWEEN 1 AND 200 THEN
		RAISE EXCEPTION 'invalid display name'
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('A display name has 1 to 200 characters; this one has %s.', COALESCE(length(name), 0)),
				  HINT = 'Pass the name the user goes by.';
	END IF;
	PERFORM mandant.check_password(args ->> 'password', address);
	IF EXISTS (SELECT 1 FROM mandant.users u WHERE lower(u.email) = lower(address)) THEN
		RAISE EXCEPTION 'a user with this e-mail address exists'
			USING ERRCODE = 'unique_violation',
				  DETAIL = 'E-mail addresses are unique, whatever their case.',
				  HINT = 'Add the existing user to the tenant with mandant.add_member().';
	END IF;
	INSERT INTO mandant.users (email, display_name, password_hash, email_confirmed_at)
	VALUES (address, name, mandant.password_hash(args ->> 'password'), CASE WHEN vouched THEN now() END)
	RETURNING id INTO new_id;
	PERFORM mandant.record_event(tenant, 'identity', 'user.created', 'user', new_id::text,
								  jsonb_build_object('email', address, 'by', caller));
	/* The platform vouches for the address: the owner named by a tenant joins it now. */
	IF vouched THEN
		PERFORM mandant.join_owned_tenants(new_id);
	END IF;
	RETURN to_jsonb(new_id);
END
$$;

/*
 * join_owned_tenants makes a user whose e-mail the platform vouched for
 * the owner of every tenant that names that e-mail as its owner and has
 * none yet.
 */
CREATE FUNCTION mandant.join_owned_tenants(account uuid)
RETURNS void
LANGUAGE plpgsql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	joined uuid;
BEGIN
	FOR joined IN
		SELECT t.id FROM mandant.tenant t, mandant.users u
		WHERE u.id = account AND u.email_confirmed_at IS NOT NULL
		  AND lower(t.owner_email) = lower(u.email) AND t.status IN ('pending', 'active', 'suspended')
		  AND NOT EXISTS (SELECT 1 FROM mandant.membership x WHERE x.tenant_id = t.id AND x.role = 'owner')
		  AND NOT EXISTS (SELECT 1 FROM mandant.membership x WHERE x.tenant_id = t.id AND x.user_id = account)
		ORDER BY t.id
		FOR UPDATE OF t
	LOOP
		PERFORM mandant.consume(joined, 'users', 1);
		INSERT INTO mandant.membership (tenant_id, user_id, role, created_by)
		VALUES (joined, account, 'owner', 'owner_email');
		PERFORM mandant.record_event(joined, 'identity', 'member.added', 'user', account::text,
									 jsonb_build_object('role', 'owner', 'by', 'owner_email'));
	END LOOP;
END
$$;

COMMENT ON FUNCTION mandant.join_owned_tenants(uuid) IS
'Internal: a user whose e-mail is confirmed becomes the owner of the tenants that name it as owner_email and have no owner.';

/*
 * identity_confirm_user_email: a trusted backend that verified the user's
 * address (a link sent to it was followed) vouches for it; the user then
 * owns the tenants that name it.
 */
CREATE FUNCTION mandant.identity_confirm_user_email(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account uuid := (args ->> 'userId')::uuid;
BEGIN
	PERFORM mandant.check_user_exists(account);
	UPDATE mandant.users u SET email_confirmed_at = now(), updated_at = now()
	WHERE u.id = account AND u.email_confirmed_at IS NULL;
	IF FOUND THEN
		PERFORM mandant.record_event(NULL, 'identity', 'email.confirmed', 'user', account::text,
									 jsonb_build_object('by', caller));
	END IF;
	PERFORM mandant.join_owned_tenants(account);
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_add_member(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	member		uuid := (args ->> 'userId')::uuid;
	new_role	text := args ->> 'role';
BEGIN
	PERFORM mandant.lock_tenant(tenant);
	PERFORM mandant.check_role(tenant, new_role);
	PERFORM mandant.check_owner_change(tenant, NULL, new_role);
	IF NOT EXISTS (SELECT 1 FROM mandant.users u WHERE u.id = member) THEN
		RAISE EXCEPTION 'user % does not exist', member
			USING ERRCODE = 'no_data_found', DETAIL = 'No row of mandant.users has that id.',
				  HINT = 'Create the user with mandant.create_user() first.';
	END IF;
	IF EXISTS (SELECT 1 FROM mandant.membership m WHERE m.tenant_id = tenant AND m.user_id = member) THEN
		RAISE EXCEPTION 'user % is already a member', member
			USING ERRCODE = 'unique_violation', DETAIL = 'A user has one role per tenant.',
				  HINT = 'Change the role with mandant.set_member_role().';
	END IF;
	PERFORM mandant.consume(tenant, 'users', 1);		-- MD030 past the plan's users
	INSERT INTO mandant.membership (tenant_id, user_id, role, created_by)
	VALUES (tenant, member, new_role, COALESCE(mandant.current_user_id()::text, caller));
	PERFORM mandant.record_event(tenant, 'identity', 'member.added', 'user', member::text,
								  jsonb_build_object('role', new_role, 'by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_set_member_role(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	member		uuid := (args ->> 'userId')::uuid;
	new_role	text := args ->> 'role';
	old_role	text;
BEGIN
	PERFORM mandant.lock_tenant(tenant);
	PERFORM mandant.check_role(tenant, new_role);
	SELECT m.role INTO old_role FROM mandant.membership m WHERE m.tenant_id = tenant AND m.user_id = member;
	IF old_role IS NULL THEN
		RAISE EXCEPTION 'user % is not a member of tenant %', member, tenant
			USING ERRCODE = 'no_data_found', DETAIL = 'mandant.membership has no row for them.',
				  HINT = 'Add them with mandant.add_member().';
	END IF;
	PERFORM mandant.check_owner_change(tenant, old_role, new_role);
	UPDATE mandant.membership m SET role = new_role WHERE m.tenant_id = tenant AND m.user_id = member;
	PERFORM mandant.keep_an_owner(tenant);
	PERFORM mandant.record_event(tenant, 'identity', 'member.role_changed', 'user', member::text,
								  jsonb_build_object('from', old_role, 'to', new_role, 'by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_remove_member(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	member		uuid := (args ->> 'userId')::uuid;
	old_role	text;
BEGIN
	PERFORM mandant.lock_tenant(tenant);
	SELECT m.role INTO old_role FROM mandant.membership m WHERE m.tenant_id = tenant AND m.user_id = member;
	IF old_role IS NULL THEN
		RAISE EXCEPTION 'user % is not a member of tenant %', member, tenant
			USING ERRCODE = 'no_data_found', DETAIL = 'mandant.membership has no row for them.',
				  HINT = 'See mandant.list_members().';
	END IF;
	PERFORM mandant.check_owner_change(tenant, old_role, NULL);
	PERFORM mandant.consume(tenant, 'users', -1);
	DELETE FROM mandant.membership m WHERE m.tenant_id = tenant AND m.user_id = member;
	PERFORM mandant.keep_an_owner(tenant);
	UPDATE mandant.refresh_family f SET revoked_at = now(), revoked_reason = 'removed from tenant'
	WHERE f.user_id = member AND f.tenant_id = tenant AND f.revoked_at IS NULL;
	PERFORM mandant.record_event(tenant, 'identity', 'member.removed', 'user', member::text,
								  jsonb_build_object('role', old_role, 'by', caller));
	RETURN NULL;
END
$$;

/*
 * check_role_definition raises unless a tenant role of that name and those
 * scopes may exist: not a system role's name, a simple name, some of read,
 * write, delete, admin (create_role, and import for the roles it brings).
 */
CREATE FUNCTION mandant.check_role_definition(role_name text, role_scopes text[])
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF EXISTS (SELECT 1 FROM mandant.role r WHERE r.tenant_id IS NULL AND r.name = role_name) THEN
		RAISE EXCEPTION 'role "%" is a system role', role_name
			USING ERRCODE = 'unique_violation', DETAIL = 'owner, admin, manager, agent and viewer are defined by mandant.',
				  HINT = 'Choose another name.';
	END IF;
	IF role_name IS NULL OR role_name !~ '^[a-z][a-z0-9_-]{0,62}$' THEN
		RAISE EXCEPTION 'invalid role name %', COALESCE(quote_literal(role_name), 'NULL')
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = 'A role name has 1 to 63 characters: a-z first, then a-z, 0-9, ''_'' or ''-''.',
				  HINT = 'For example ''auditor''.';
	END IF;
	IF NOT role_scopes <@ ARRAY['read', 'write', 'delete', 'admin'] OR cardinality(role_scopes) = 0 THEN
		RAISE EXCEPTION 'invalid scopes for role "%"', role_name
			USING ERRCODE = 'invalid_parameter_value',
				  DETAIL = format('The scopes were %s; a tenant role holds some of read, write, delete, admin.', role_scopes),
				  HINT = 'For example ''{read,write}''.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_role_definition(text, text[]) IS
'Internal: raise 23505 for a system role''s name, 22023 for an invalid role name or scopes of a tenant role.';

CREATE FUNCTION mandant.identity_create_role(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	role_name	text := args ->> 'name';
	role_scopes	text[] := ARRAY(SELECT jsonb_array_elements_text(args -> 'scopes'));
BEGIN
	PERFORM mandant.check_role_definition(role_name, role_scopes);
	BEGIN
		INSERT INTO mandant.role (tenant_id, name, scopes, description)
		VALUES (tenant, role_name, role_scopes, args ->> 'description');
	EXCEPTION WHEN unique_violation THEN
		RAISE EXCEPTION 'role "%" exists', role_name
			USING ERRCODE = 'unique_violation', DETAIL = 'Role names are unique per tenant.', HINT = 'Choose another name.';
	END;
	PERFORM mandant.record_event(tenant, 'identity', 'role.created', 'role', role_name,
								  jsonb_build_object('scopes', role_scopes, 'by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_drop_role(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	role_name text := args ->> 'name';
BEGIN
	PERFORM mandant.lock_tenant(tenant);
	IF EXISTS (SELECT 1 FROM mandant.membership m WHERE m.tenant_id = tenant AND m.role = role_name) THEN
		RAISE EXCEPTION 'role "%" is in use', role_name
			USING ERRCODE = 'dependent_objects_still_exist', DETAIL = 'Members of the tenant hold it.',
				  HINT = 'Give them another role first.';
	END IF;
	DELETE FROM mandant.role r WHERE r.tenant_id = tenant AND r.name = role_name;
	IF NOT FOUND THEN
		RAISE EXCEPTION 'role "%" does not exist in this tenant', role_name
			USING ERRCODE = 'no_data_found', DETAIL = 'System roles cannot be dropped.', HINT = 'See mandant.role.';
	END IF;
	PERFORM mandant.record_event(tenant, 'identity', 'role.dropped', 'role', role_name, jsonb_build_object('by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.check_user_exists(account uuid)
RETURNS void
LANGUAGE plpgsql STABLE
SET search_path = pg_catalog, pg_temp
AS $$
BEGIN
	IF NOT EXISTS (SELECT 1 FROM mandant.users u WHERE u.id = account) THEN
		RAISE EXCEPTION 'user % does not exist', account
			USING ERRCODE = 'no_data_found', DETAIL = 'No row of mandant.users has that id.', HINT = 'Check the id.';
	END IF;
END
$$;

COMMENT ON FUNCTION mandant.check_user_exists(uuid) IS
'Internal: P0002 unless the user exists.';

CREATE FUNCTION mandant.identity_disable_user(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account uuid := (args ->> 'userId')::uuid;
BEGIN
	PERFORM mandant.check_user_exists(account);
	UPDATE mandant.users u SET status = 'disabled', updated_at = now() WHERE u.id = account;
	PERFORM mandant.revoke_tokens_of(account, 'user disabled');
	PERFORM mandant.record_event(NULL, 'identity', 'user.disabled', 'user', account::text, jsonb_build_object('by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_enable_user(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account uuid := (args ->> 'userId')::uuid;
BEGIN
	PERFORM mandant.check_user_exists(account);
	UPDATE mandant.users u SET status = 'active', updated_at = now() WHERE u.id = account;
	PERFORM mandant.record_event(NULL, 'identity', 'user.enabled', 'user', account::text, jsonb_build_object('by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.identity_reset_password(tenant uuid, args jsonb, caller text)
RETURNS jsonb
LANGUAGE plpgsql VOLATILE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	account uuid := (args ->> 'userId')::uuid;
	address text;
BEGIN
	PERFORM mandant.check_user_exists(account);
	SELECT u.email INTO address FROM mandant.users u WHERE u.id = account;
	PERFORM mandant.check_password(args ->> 'password', address);
	UPDATE mandant.users u SET password_hash = mandant.password_hash(args ->> 'password'), updated_at = now()
	WHERE u.id = account;
	PERFORM mandant.revoke_tokens_of(account, 'password reset');
	PERFORM mandant.record_event(NULL, 'identity', 'password.reset', 'user', account::text, jsonb_build_object('by', caller));
	RETURN NULL;
END
$$;

CREATE FUNCTION mandant.create_user(email text, password text, display_name text)
RETURNS uuid
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT (mandant.gate_call('create_user', mandant.current_tenant(),
		jsonb_build_object('email', email, 'password', password, 'displayName', display_name)) #>> '{}')::uuid
$$;

COMMENT ON FUNCTION mandant.create_user(text, text, text) IS
'Create a user (password: at least 12 characters, at most 72 bytes, not the e-mail; bcrypt cost 12). For trusted backends, mandant_admin, and tenant administrators (then add them with add_member). Returns the id.';

CREATE FUNCTION mandant.add_member(tenant uuid, user_id uuid, role text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('add_member', tenant, jsonb_build_object('userId', user_id, 'role', role)); $$;

COMMENT ON FUNCTION mandant.add_member(uuid, uuid, text) IS
'Add a user to a tenant in a role. For the tenant''s administrators inside the tenant, trusted backends there and mandant_admin; the owner role only by owners.';

CREATE FUNCTION mandant.set_member_role(tenant uuid, user_id uuid, role text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('set_member_role', tenant, jsonb_build_object('userId', user_id, 'role', role)); $$;

COMMENT ON FUNCTION mandant.set_member_role(uuid, uuid, text) IS
'Change a member''s role (the tenant keeps at least one owner; owners change owners). Tokens issued for the old role stop working.';

CREATE FUNCTION mandant.remove_member(tenant uuid, user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('remove_member', tenant, jsonb_build_object('userId', user_id)); $$;

COMMENT ON FUNCTION mandant.remove_member(uuid, uuid) IS
'Remove a member (not the last owner); their sessions in the tenant end.';

CREATE FUNCTION mandant.create_role(name text, scopes text[], description text DEFAULT NULL)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$
	SELECT mandant.gate_call('create_role', mandant.current_tenant(),
		jsonb_build_object('name', name, 'scopes', to_jsonb(scopes), 'description', description));
$$;

COMMENT ON FUNCTION mandant.create_role(text, text[], text) IS
'Add a role to the current tenant with a subset of read, write, delete, admin.';

CREATE FUNCTION mandant.drop_role(name text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('drop_role', mandant.current_tenant(), jsonb_build_object('name', name)); $$;

COMMENT ON FUNCTION mandant.drop_role(text) IS
'Drop a role of the current tenant that nobody holds.';

CREATE FUNCTION mandant.disable_user(user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('disable_user', NULL, jsonb_build_object('userId', user_id)); $$;

COMMENT ON FUNCTION mandant.disable_user(uuid) IS
'Disable a user everywhere and revoke all their tokens. For trusted backends and mandant_admin.';

CREATE FUNCTION mandant.enable_user(user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('enable_user', NULL, jsonb_build_object('userId', user_id)); $$;

COMMENT ON FUNCTION mandant.enable_user(uuid) IS
'Enable a disabled user again (their old tokens stay revoked).';

CREATE FUNCTION mandant.reset_password(user_id uuid, new_password text)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('reset_password', NULL, jsonb_build_object('userId', user_id, 'password', new_password)); $$;

COMMENT ON FUNCTION mandant.reset_password(uuid, text) IS
'Set a user''s password (the reset flow of a trusted backend, or mandant_admin); revokes all their tokens.';

CREATE FUNCTION mandant.confirm_user_email(user_id uuid)
RETURNS void
LANGUAGE sql VOLATILE
SET search_path = pg_catalog, pg_temp
AS $$ SELECT mandant.gate_call('confirm_user_email', NULL, jsonb_build_object('userId', user_id)); $$;

COMMENT ON FUNCTION mandant.confirm_user_email(uuid) IS
'Vouch for a user''s e-mail address (after the trusted backend verified it): the user becomes owner of the tenants that name the address as owner_email and have no owner. Trusted backends and mandant_admin only; users created by them are confirmed already.';

CREATE FUNCTION mandant.list_members()
RETURNS TABLE (user_id uuid, email text, display_name text, role text, status text, mfa boolean,
			   joined_at timestamptz, last_login_at timestamptz)
LANGUAGE plpgsql STABLE
SECURITY DEFINER
SET search_path = pg_catalog, pg_temp
AS $$
DECLARE
	tenant uuid := mandant.require_tenant();
BEGIN
	IF NOT (mandant.has_scope('read') OR mandant.has_scope('admin')) THEN
		RAISE EXCEPTION 'permission denied to list the members of tenant %', tenant
			USING ERRCODE = 'insufficient_privilege',
				  DETAIL = format('The transaction holds scopes %s.', mandant.current_scopes()),
				  HINT = 'Listing members needs scope read.';
	END IF;
	RETURN QUERY
	SELECT u.id, u.email, u.display_name, m.role, u.status, u.totp_state = 'on', m.created_at, u.last_login_at
	FROM mandant.membership m JOIN mandant.users u ON u.id = m.user_id
	WHERE m.tenant_id = tenant
	ORDER BY lower(u.email);
END
$$;

COMMENT ON FUNCTION mandant.list_members() IS
'The members of the current tenant (needs scope read). Never returns secrets.';

REVOKE ALL ON FUNCTION mandant.join_owned_tenants(uuid) FROM PUBLIC;
