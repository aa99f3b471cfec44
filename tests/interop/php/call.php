<?php
// Calls QRM Cloud SOAP operations with PHP's SoapClient in WSDL mode.
//
//   php call.php WSDL_URL USER PASSWORD text|digest < calls.json
//
// stdin: a JSON list of {"operation": "...", "params": {"name": value, ...}}.
// stdout: a JSON list with, per call, {"result": ...} or {"fault": {"code": ..., "string": ...}}.
// The WS-Security UsernameToken header is built by hand: PHP has no WS-Security client.

const WSSE_NS = 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd';
const WSU_NS = 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd';
const PROFILE = 'http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-username-token-profile-1.0';

function security_header(string $user, string $password, string $mode): SoapHeader
{
    $username = htmlspecialchars($user, ENT_XML1);
    if ($mode === 'digest') {
        $nonce = random_bytes(16);
        $created = gmdate('Y-m-d\TH:i:s\Z');
        $digest = base64_encode(sha1($nonce . $created . $password, true));
        $token = '<wsse:Username>' . $username . '</wsse:Username>'
            . '<wsse:Password Type="' . PROFILE . '#PasswordDigest">' . $digest . '</wsse:Password>'
            . '<wsse:Nonce EncodingType="http://docs.oasis-open.org/wss/2004/01/'
            . 'oasis-200401-wss-soap-message-security-1.0#Base64Binary">'
            . base64_encode($nonce) . '</wsse:Nonce>'
            . '<wsu:Created>' . $created . '</wsu:Created>';
    } else {
        $token = '<wsse:Username>' . $username . '</wsse:Username>'
            . '<wsse:Password Type="' . PROFILE . '#PasswordText">'
            . htmlspecialchars($password, ENT_XML1) . '</wsse:Password>';
    }
    $xml = '<wsse:Security xmlns:wsse="' . WSSE_NS . '" xmlns:wsu="' . WSU_NS . '">'
        . '<wsse:UsernameToken>' . $token . '</wsse:UsernameToken></wsse:Security>';
    return new SoapHeader(WSSE_NS, 'Security', new SoapVar($xml, XSD_ANYXML), true);
}

[$script, $wsdl, $user, $password, $mode] = $argv;
$client = new SoapClient($wsdl, [
    'features' => SOAP_SINGLE_ELEMENT_ARRAYS,   // a one-element array stays an array
    'cache_wsdl' => WSDL_CACHE_NONE,
    'exceptions' => true,
    'trace' => false,
]);
$client->__setSoapHeaders([security_header($user, $password, $mode)]);

$answers = [];
foreach (json_decode(stream_get_contents(STDIN), true, 512, JSON_THROW_ON_ERROR) as $call) {
    $operation = $call['operation'];
    try {
        $response = $client->__soapCall($operation, [$call['params']]);
        $result = $operation . 'Result';
        $answers[] = ['result' => $response->$result ?? null];
    } catch (SoapFault $fault) {
        $answers[] = ['fault' => ['code' => $fault->faultcode, 'string' => $fault->faultstring]];
    }
}
echo json_encode($answers, JSON_PRESERVE_ZERO_FRACTION | JSON_THROW_ON_ERROR), "\n";
