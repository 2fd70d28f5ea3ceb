<?php
// Signs a Footpath identity token (docs/identity.md) with PHP's standard library only.
// Run as a script, it prints the token of the docs' worked example; a site's server
// includes this file and passes 'exp' => time() + 3600.

function footpath_b64url(string $data): string
{
    return rtrim(strtr(base64_encode($data), '+/', '-_'), '=');
}

function footpath_identity_token(string $secret, array $claims): string
{
    $header = footpath_b64url('{"alg":"HS256","typ":"JWT"}');
    $payload = footpath_b64url(json_encode($claims, JSON_UNESCAPED_SLASHES | JSON_THROW_ON_ERROR));
    $signingInput = $header . '.' . $payload;
    return $signingInput . '.' . footpath_b64url(hash_hmac('sha256', $signingInput, $secret, true));
}

if (realpath($_SERVER['SCRIPT_FILENAME'] ?? '') === __FILE__) {
    echo footpath_identity_token('change-me-to-32-random-bytes-hex',
        ['aud' => 'shop', 'email' => 'ann@example.com', 'exp' => 1795504514, 'sub' => 'user-42']), "\n";
}
