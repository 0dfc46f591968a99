"""Ways readers ask to subscribe and to unsubscribe, language by language.

Each entry is a regular-expression fragment matched against NFKC-normalised, lower-cased
text (full-width letters and colons are folded, curly apostrophes straightened). Every
fragment is bounded: gaps are ``{0,N}`` over characters that cannot end a sentence, so
matching is linear in the text and a noun and its verb must stand in one clause.

Languages without spaces (Japanese, Chinese, Korean) are matched on meaning: a noun for
the subscription (購読, 配信, 登録, 구독, 订阅 …) followed within a few characters by a
verb or ending (解除, 停止, やめ, 取消, 그만 …), so particles and polite endings may
stand between them (購読を解除したい, 配信を停止してください, 구독을 취소해 주세요).

``third_person`` finds requests about somebody else (a colleague, a named person, a
former staff member); ``self_words`` shows the sender asks for themselves, so a passing
mention of "our team" does not turn a request for oneself into one for someone else.

Reviewed by reading each list against the tests in ``tests/inbox/test_lexicon.py``,
which hold sentences in each language.
"""

from dataclasses import dataclass

# a gap inside one clause: no sentence end, no line break
_GAP = r"[^.!?。！？\n]"
_CJK_GAP = r"[^.!?。！？\n]{0,8}?"


def _near(nouns: str, verbs: str, gap: str = _CJK_GAP) -> str:
    return f"(?:{nouns}){gap}(?:{verbs})"


@dataclass(frozen=True)
class Language:
    code: str
    unsubscribe: tuple[str, ...]
    subscribe: tuple[str, ...]
    third_person: tuple[str, ...] = ()
    self_words: tuple[str, ...] = ()


ENGLISH = Language(
    "en",
    unsubscribe=(
        r"\bun-?\s?s[ua]?b?s?c?r?i?be?\w*",  # unsubscribe, unsubcribe, unsuscribe, unsubscibe
        r"\bunsub\b",
        r"\bun-?subscription\b",
        r"\bremove (?:me|us|myself|my (?:e-?mail|address|name|e-?mail address))\b",
        r"\b(?:please|pls|plz|kindly) remove\b",
        r"\bremove (?:from|off) (?:the |your |this )?(?:list|mailing|distribution)",
        r"\btake (?:me|us|my (?:e-?mail|address|name)) off\b",
        r"\b(?:stop|quit|cease) (?:sending|e-?mailing|mailing|receiving|getting)\b",
        r"\bno longer (?:wish|want|like|need|care) to (?:receive|get|be on|read)\b",
        r"\b(?:don'?t|do not|dont) (?:want|wish|need) (?:to (?:receive|get|be on)|this|these|it)\b",
        r"\bopt[- ]?(?:me )?out\b",
        r"\bcancel (?:my|the|this|our) subscription\b",
        r"\bend (?:my|the|our) subscription\b",
        r"\b(?:delete|drop) me\b",
        r"\b(?:never|didn'?t|did not) (?:sign(?:ed)? up|subscribe[d]?|ask(?:ed)? for (?:this|it))\b",
        r"^\s*stop\s*[.!]*\s*$",
        r"\bleave (?:the|your|this) (?:list|mailing list)\b",
        r"\b(?:rather not|prefer not to) (?:get|receive|be sent|be on)\b",
        r"\bnot (?:to )?(?:get|receive|be sent) (?:these|this|them|it|your \w+) any ?more\b",
        r"\bno more (?:e-?mails?|mails?|newsletters?|digests?|of (?:these|this))\b",
    ),
    subscribe=(
        r"\bsubscribe\b",
        r"\bsubscription request\b",
        r"\bsign (?:me |us )?up\b",
        r"\badd (?:me|us|myself)\b",
        r"\bplease add\b",
        r"\badd my (?:[\w-]{1,20} ){0,2}(?:e-?mail|address)\b",
        r"\b(?:like|love|want|wish|hoping|hope) to (?:receive|get|subscribe|join|be added|be on"
        r"|be included|start receiving|sign up)\b",
        r"\bput (?:me|us) on\b",
        r"\binclude (?:me|us)\b",
        r"\bcount me in\b",
        r"\bjoin (?:the|your) (?:mailing )?list\b",
        r"\bsend (?:me|us) (?:the|your) (?:digest|newsletter)\b",
        r"\bkeep me (?:on|posted|updated)\b",
        r"\b(?:keep|continue) (?:receiving|getting)\b|\bstay (?:subscribed|on the list)\b",
        r"\breceive (?:the|your) (?:digest|newsletter) by e-?mail\b",
    ),
    third_person=(
        r"\b(?:my|our) (?:[\w-]{1,20} )?(?:colleagues?|co-?workers?|friends?|boss|assistant"
        r"|manager|partner|wife|husband|intern|director|secretary|successor|predecessor"
        r"|staff member|employee|team ?mate)\b",
        r"\b(?:former|ex-|previous) (?:staff|employee|colleague|member|team member|intern)",
        r"\b(?:he|she|they) (?:has|have|had)? ?(?:left|retired|moved on|passed away)\b",
        r"\b(?:he|she|they)(?: is| are|'s|'re)? no longer (?:works?|with us|employed|at|here)\b",
        r"\bon behalf of\b",
        r"\b(?:his|her|their) (?:e-?mail|address|subscription|mailbox|account)\b",
    ),
    self_words=(
        r"\b(?:me|myself|i'?d|i would|i want|i wish|i'm|i am|my (?:e-?mail|address|own))\b",
    ),
)

JAPANESE = Language(
    "ja",
    unsubscribe=(
        _near(
            "購読|配信|登録|メール|ﾒｰﾙ|ニュースレター|メルマガ|ダイジェスト|案内|送信",
            "解除|停止|中止|取りやめ|取り止め|やめ|止め|とめ|不要|いりません|要りません"
            "|キャンセル|取り消|取消|削除|外し|はずし|抹消",
        ),
        r"退会",
        r"送らないで",
        r"送付(?:を|は)?(?:不要|停止|中止|結構)",
        r"もう(?:結構|必要ありません|不要)",
        r"リストから(?:外|はず|削除)",
    ),
    subscribe=(
        _near(
            "購読|配信|登録|メール|ニュースレター|メルマガ|ダイジェスト",
            "希望|お願い|願い|したい|して(?:ください|下さい|いただ|頂)|申し込|申込|開始",
        ),
        r"送って(?:ください|下さい|いただ|頂|ほしい|欲しい)",
        r"受け取りたい|受信したい|読みたい",
        r"(?:リスト|名簿)に(?:追加|加え|入れ)",
    ),
    third_person=(r"同僚|友人|部下|上司|後任|前任|退職|家族|秘書|代わりに|代理",),
    self_words=(r"私|わたし|僕|自分|小生|弊職",),
)

KOREAN = Language(
    "ko",
    unsubscribe=(
        _near(
            "구독|수신|뉴스레터|메일|이메일|발송|전송",
            "취소|해지|중단|중지|거부|그만|해제|원하지 않|원치 않|끊|빼",
        ),
        r"그만 (?:보내|받)",
        r"더 이상 (?:받고 싶지 않|받지 않|보내지 마|필요 없|원하지 않)",
        r"목록에서 (?:빼|제외|삭제)",
        r"보내지 ?(?:마|말아)",
        r"탈퇴",
    ),
    subscribe=(
        _near("구독|수신|뉴스레터|메일|이메일|명단|목록", "신청|원합니다|원해요|희망|하고 싶|추가"),
        r"보내(?:주세요|주십시오|줘|주시기 바랍니다|주시면)",
        r"(?:받고|받아 ?보고) 싶(?!지 않)",
    ),
    third_person=(r"동료|친구|상사|부하|직원|퇴사|대신|비서|후임",),
    self_words=(r"저는|제가|저의|제 |저 |나는|내가",),
)

CHINESE = Language(
    "zh",
    unsubscribe=(
        _near(
            "订阅|訂閱|邮件|郵件|电邮|電郵|简报|簡報|通讯|通訊|推送|发送|發送",
            "取消|退订|退訂|停止|退出|不要|不再|删除|刪除|移除",
        ),
        r"退订|退訂",
        _near(
            "取消|退出|停止|不要|不再|退掉",
            "订阅|訂閱|邮件|郵件|电子报|電子報|简报|簡報|通讯|通訊|推送",
            r"[^.!?。！？\n]{0,4}?",
        ),
        r"不(?:要|想|再|需要)(?:再)?(?:收|接收|收到)",
        r"别再发|別再發|不要再发|不要再發",
        r"(?:不要|别|別|不用)再(?:给我|給我)?(?:发|發|寄)",
        r"停止(?:寄送|发送|發送|寄发|寄發|推送)",
        r"(?:从|從)(?:名单|名單|列表)(?:中)?(?:删除|刪除|移除)",
    ),
    subscribe=(
        _near(
            "订阅|訂閱|邮件列表|郵件列表|名单|名單|列表",
            "申请|申請|希望|想|要|加入|添加|开始|開始",
            r"[^.!?。！？\n]{0,4}?",
        ),
        r"(?:我)?(?:想|希望|要)(?:订阅|訂閱)",
        r"(?:请|請)(?:把我|将我|將我)?(?:加入|添加|加到)",
        r"(?:请|請)(?:发送|發送|寄)(?:给我|給我)",
        r"(?:想|希望)(?:收到|接收|订阅|訂閱)",
        r"(?:帮|幫|给|給|替)我(?:订阅|訂閱|登记|登記|加入)",
        r"^(?:订阅|訂閱)(?:电子报|電子報|简报|簡報|通讯|通訊)?$",
    ),
    third_person=(r"同事|朋友|上司|下属|下屬|员工|員工|离职|離職|代替|秘书|秘書",),
    self_words=(r"我",),
)

GERMAN = Language(
    "de",
    unsubscribe=(
        r"\babbestell\w*",
        r"\babmeld\w*",
        r"\bmelden sie mich ab\b",
        r"\bmelde mich ab\b",
        r"\bkündig\w*",
        r"\baustragen\b|\bausgetragen\b|\btragen sie mich\b" + _GAP + r"{0,20}\baus\b",
        r"\b(?:bitte )?(?:keine|nicht mehr)\b"
        + _GAP
        + r"{0,30}(?:zusenden|senden|schicken|e-?mails?"
        r"|newsletter|erhalten|zuschicken)",
        r"\bvom verteiler\b" + _GAP + r"{0,20}(?:nehmen|streichen|löschen|entfernen)",
        r"\b(?:streichen|entfernen|löschen) sie mich\b",
        r"\bentfernen sie meine\b",
    ),
    subscribe=(
        r"\babonnier\w*",
        r"\banmeld\w*",
        r"\bmelden sie mich an\b",
        r"\bnehmen sie mich\b" + _GAP + r"{0,30}\bauf\b",
        r"\bin (?:den|ihren) verteiler\b",
        r"\b(?:möchte|würde|will)\b" + _GAP + r"{0,60}(?:erhalten|bekommen|abonnieren"
        r"|beziehen|aufgenommen|aufnehmen)",
        r"\bmich\b" + _GAP + r"{0,40}\baufnehmen\b",
        r"\bweiterhin (?:erhalten|bekommen|beziehen)\b",
        r"\bbitte (?:senden|schicken) sie mir\b",
    ),
    third_person=(
        r"\b(?:mein(?:e[nr]?)?|unser(?:e[nr]?)?) (?:kolleg\w*|mitarbeiter\w*|chef\w*|assistent\w*"
        r"|sekretär\w*|nachfolger\w*|vorgänger\w*|freund\w*)",
        r"\b(?:ehemalig\w*|frühere[rn]?) (?:mitarbeiter\w*|kolleg\w*)",
        r"\b(?:er|sie) (?:ist|hat) (?:nicht mehr|ausgeschieden|das unternehmen verlassen)",
        r"\bim auftrag von\b|\bim namen von\b",
    ),
    self_words=(r"\b(?:mich|ich|mir|meine e-?mail|meine adresse)\b",),
)

FRENCH = Language(
    "fr",
    unsubscribe=(
        r"\bd[ée]sabonn\w*",
        r"\bd[ée]sinscri\w*",
        r"\bd[ée]sinscription\b",
        r"\bretire[rz]?\b" + _GAP + r"{0,30}\b(?:liste|adresse|de vos envois|diffusion)",
        r"\bsupprime[rz]?\b" + _GAP + r"{0,30}\b(?:liste|adresse|mon e-?mail|diffusion)",
        r"\bne (?:plus|pas) (?:m'envoyer|recevoir|me l'envoyer)\b",
        r"\bne (?:souhaite|veux|désire) plus\b" + _GAP + r"{0,30}\brecevoir\b",
        r"\barr[êe]te[rz]?\b" + _GAP + r"{0,30}\b(?:envoi|envois|m'envoyer|newsletter|lettre)",
        r"\bme retirer\b",
    ),
    subscribe=(
        r"\bm'abonner\b|\babonnez-moi\b|\bje m'abonne\b|\babonnement\b",
        r"\bm'inscrire\b|\binscrivez-moi\b|\binscription\b",
        r"\b(?:souhaite|voudrais|aimerais|désire|veux)\b" + _GAP + r"{0,40}\brecevoir\b",
        r"\bajoute[rz]?[- ]moi\b|\bm'ajouter\b",
        r"\bmerci de m'envoyer\b|\benvoyez-moi\b",
        r"\bcontinuer [àa] recevoir\b",
    ),
    third_person=(
        r"\b(?:mon|ma|mes|notre|nos) (?:coll[èe]gues?|assistante?s?|ami[e]?s?|chef|directeur"
        r"|directrice|successeur|employ[ée]e?s?|secr[ée]taire)\b",
        r"\b(?:ancien(?:ne)?s?) (?:coll[èe]gues?|employ[ée]e?s?|membres?)\b",
        r"\b(?:il|elle) a quitt[ée]\b|\bn'est plus (?:chez|avec|parmi)\b",
        r"\bde la part de\b|\bau nom de\b",
    ),
    self_words=(r"\b(?:moi|me|m'|je|mon adresse|mon e-?mail)\b",),
)

SPANISH = Language(
    "es",
    unsubscribe=(
        r"\bdar(?:me)? de baja\b|\bdarme de baja\b|\bden de baja\b|\bde baja\b",
        r"\bdesuscrib\w*|\bdesinscrib\w*|\bcancelar (?:mi |la )?suscripci[óo]n\b",
        r"\b(?:elimin|quit|borr|sac)(?:ar|en|e)(?:me)?\b"
        + _GAP
        + r"{0,30}\b(?:lista|env[íi]os|correo)",
        r"\bno (?:quiero|deseo) (?:seguir )?recibir\b",
        r"\bdejen? de (?:enviar|mandar)\b",
        r"\bya no (?:quiero|deseo) recibir\b",
        r"\bno (?:me )?(?:manden|env[íi]en|mande|env[íi]e|sigan enviando) m[áa]s\b",
        r"^\s*baja\b|\bbaja,? por favor\b|\b(?:solicito|pido|quiero|deseo) (?:la |darme de )?baja\b",
    ),
    subscribe=(
        r"\bsuscr[ií]b\w*|\bsuscripci[óo]n\b",
        r"\b(?:quiero|deseo|prefiero) seguir recibi",
        r"\bdarme de alta\b|\bdar de alta\b",
        r"\b(?:quiero|quisiera|deseo|me gustar[íi]a)\b" + _GAP + r"{0,40}\brecibir\b",
        r"\bagr[ée]g(?:ue|ar)me\b|\ba[ñn][áa]danme\b|\bincl[úu]yanme\b",
        r"\benv[íi]enme\b|\bm[áa]ndenme\b",
    ),
    third_person=(
        r"\b(?:mi|mis|nuestro|nuestra|nuestros|nuestras) (?:colegas?|compa[ñn]er[oa]s?"
        r"|asistentes?|amig[oa]s?|jef[ea]|secretari[oa]|emplead[oa]s?)\b",
        r"\b(?:ex|antigu[oa]) (?:emplead[oa]|colega|compa[ñn]er[oa])",
        r"\b(?:ya no trabaja|dej[óo] la)\b",
        r"\ben nombre de\b",
    ),
    self_words=(r"\b(?:me|mi correo|mi direcci[óo]n|yo|darme)\b",),
)

LANGUAGES = (ENGLISH, JAPANESE, KOREAN, CHINESE, GERMAN, FRENCH, SPANISH)
