<?php
// Calls QRM Cloud XML-RPC methods with PHP's xmlrpc extension (xmlrpc-epi), HTTP Basic.
//
//   php xmlrpc.php ENDPOINT_URL USER PASSWORD < calls.json
//
// stdin: a JSON list of {"method": "...", "params": [...]} (a JSON null is a PHP null, which
// the extension sends as an empty <string/>: it has no <nil/>).
// stdout: a JSON list with, per call, {"result": ...} or {"fault": {"code": ..., "string": ...}},
// and the request body as PHP sent it ("sent").

[$script, $url, $user, $password] = $argv;
$answers = [];
foreach (json_decode(stream_get_contents(STDIN), true) as $call) {
    $request = xmlrpc_encode_request($call['method'], $call['params']);
    $context = stream_context_create(['http' => [
        'method' => 'POST',
        'ignore_errors' => true,                       // a fault may come with any status
        'header' => "Content-Type: text/xml\r\n"
            . 'Authorization: Basic ' . base64_encode($user . ':' . $password),
        'content' => $request,
        'timeout' => 30,
    ]]);
    $body = file_get_contents($url, false, $context);
    if ($body === false) {
        fwrite(STDERR, "no answer from $url\n");
        exit(1);
    }
    $answer = xmlrpc_decode($body, 'UTF-8');
    if (is_array($answer) && xmlrpc_is_fault($answer)) {
        $answers[] = ['fault' => ['code' => $answer['faultCode'], 'string' => $answer['faultString']],
                      'sent' => $request];
    } else {
        $answers[] = ['result' => $answer, 'sent' => $request];
    }
}
echo json_encode($answers, JSON_PRETTY_PRINT), "\n";
