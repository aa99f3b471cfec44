<?php
// An openQRM cloud SOAP client, written the way openQRM's own example clients are: PHP's
// SoapClient in WSDL mode on the published WSDL, SOAP 1.2, the login sent as HTTP
// login/password, and one comma-separated string "mode,user,password,fields..." per call.
//
//   php legacy_client.php WSDL_URL HTTP_LOGIN HTTP_PASSWORD < calls.json
//
// stdin: a JSON list of {"operation": "CloudUserGetDetails", "symbol": "user,alice,pw,alice"}.
// stdout: a JSON list with, per call, {"result": ...} (PHP's decoded value: null, a number,
// a string, a list or an associative array) or {"fault": {"code": ..., "string": ...}}.

ini_set('soap.wsdl_cache_enabled', '0');

[$script, $wsdl, $login, $password] = $argv;
$client = new SoapClient($wsdl, [
    'soap_version' => SOAP_1_2,
    'trace' => 1,
    'login' => $login,
    'password' => $password,
    'cache_wsdl' => WSDL_CACHE_NONE,
    'connection_timeout' => 20,
]);

$calls = json_decode(stream_get_contents(STDIN), true, 512, JSON_THROW_ON_ERROR);
$answers = [];
foreach ($calls as $call) {
    $operation = $call['operation'];
    try {
        // e.g. $client->CloudUserGetDetails("user,alice,secret1,alice")
        $result = $client->$operation($call['symbol']);
        $answers[] = ['result' => $result];
    } catch (SoapFault $fault) {
        $answers[] = ['fault' => ['code' => $fault->faultcode, 'string' => $fault->faultstring]];
    }
}
echo json_encode($answers, JSON_THROW_ON_ERROR | JSON_PRESERVE_ZERO_FRACTION), "\n";
